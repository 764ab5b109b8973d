import io

from torchlinreg import PrintReport, TrainConfig, build_model, train, tutorial_data
from torchlinreg.history import EpochRecord
from torchlinreg.report import format_epoch, format_final, format_parameters


def test_one_weight_lines_are_the_tutorials_format():
    rec = EpochRecord(3, 830.30010986, {"linear.weight": [[1.01483274]], "linear.bias": [0.99226278]})
    i, loss, w, b = 3, 830.30010986, 1.01483274, 0.99226278
    assert format_epoch(rec) == f"epoch: {i:2}  loss: {loss:10.8f}  weight: {w:10.8f}  bias: {b:10.8f}"
    assert format_final(rec.params) == f"Current weight: {w:.8f}, Current bias: {b:.8f}"
    assert format_parameters(rec.params) == f"Weight: {w}\nBias:   {b}"


def test_several_weights_extend_the_line():
    rec = EpochRecord(12, 1.5, {"linear.weight": [[1.0, -2.5]], "linear.bias": [0.25]})
    assert format_epoch(rec) == "epoch: 12  loss: 1.50000000  weight: [1.00000000, -2.50000000]  bias: 0.25000000"
    assert format_final(rec.params) == "Current weight: [1.00000000, -2.50000000], Current bias: 0.25000000"


def test_long_parameter_lists_are_shortened():
    rec = EpochRecord(1, 2.0, {"linear.weight": [[float(i) for i in range(100)]], "linear.bias": [1.0]})
    line = format_epoch(rec)
    assert "[0.00000000, 1.00000000, 2.00000000, ..., 98.00000000, 99.00000000] (100 values)" in line
    assert len(line) < 200


def test_print_report_writes_every_epoch_and_pads_wide_epoch_numbers():
    data = tutorial_data()
    out = io.StringIO()
    history = train(build_model(), data.X, data.y, TrainConfig(epochs=120, lr=1e-4), callbacks=[PrintReport(out)])
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Weight: ") and lines[1].startswith("Bias:   ")
    assert lines[2] == "Initial weight: 0.10597813, Initial bias: 0.96379614"
    epoch_lines = [ln for ln in lines if ln.startswith("epoch:")]
    assert len(epoch_lines) == 120
    assert epoch_lines[0].startswith("epoch:   1  loss:") and epoch_lines[-1].startswith("epoch: 120  loss:")
    assert lines[-1] == format_final(history.final_params)
