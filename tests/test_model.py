import pytest
import torch
from torch import nn

from bounds import U32, gamma
from torchlinreg import LinearModel, build_model


def test_initial_parameters_are_the_tutorials():
    torch.manual_seed(59)
    reference = nn.Linear(1, 1)
    model = build_model()
    assert model.linear.weight.item() == reference.weight.item()
    assert model.linear.bias.item() == reference.bias.item()
    # the values the tutorial prints, to 8 decimals: the exact float32 values are within half a unit (5e-9)
    assert model.linear.weight.item() == pytest.approx(0.10597813, abs=1e-8)
    assert model.linear.bias.item() == pytest.approx(0.96379614, abs=1e-8)


def test_parameters_by_name():
    model = build_model()
    assert [name for name, _ in model.named_parameters()] == ["linear.weight", "linear.bias"]
    params = model.parameters_by_name()
    assert params["linear.weight"].shape == (1, 1) and params["linear.bias"].shape == (1,)
    params["linear.weight"] += 1  # copies: the model is unchanged
    assert model.linear.weight.item() == pytest.approx(0.10597813, abs=1e-8)  # printed to 8 decimals: ≤ 5e-9 off


def test_forward_on_new_input():
    model = build_model()
    x = torch.tensor([2.0])
    out = model(x)
    # the tutorial's f(2.0), printed to 4 decimals: half a unit (5e-5) plus float32 rounding (~U32·1.2 = 7e-8)
    assert out.item() == pytest.approx(1.1758, abs=1e-4)
    # 2·w is exact and w·2 + b rounds once in float32 (fused or not): rel ≤ U32 = 6e-8 < 1e-7
    assert out.item() == pytest.approx(2.0 * model.linear.weight.item() + model.linear.bias.item(), rel=1e-7)


def test_any_size_and_shapes():
    model = build_model(3, 2, seed=1)
    assert (model.in_features, model.out_features) == (3, 2)
    X = torch.randn(5, 3)
    W, b = model.linear.weight.detach(), model.linear.bias.detach()
    expected = X @ W.T + b
    # two float32 evaluations of a 3-term dot plus the bias (addmm vs matmul-then-add, other kernels): each is
    # within γ_4·(|X||W|ᵀ + |b|) of the exact value (Higham 3.5), so they differ by at most twice that
    bound = 2 * gamma(4, U32) * (X.abs() @ W.abs().T + b.abs())
    assert ((model(X).detach() - expected).abs() <= bound).all()
    assert "Linear(in_features=3, out_features=2" in repr(model)


def test_seed_is_reproducible_and_global_state_untouched():
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    a, b = build_model(seed=11), build_model(seed=11)
    assert torch.equal(torch.rand(2), expected)
    assert torch.equal(a.linear.weight, b.linear.weight)
    assert not torch.equal(build_model(seed=12).linear.weight, a.linear.weight)
    assert isinstance(build_model(seed=None), LinearModel)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="positive integer"):
        build_model(bad, 1)
