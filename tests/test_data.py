import pytest
import torch

from torchlinreg import ConfigError, Dataset, tutorial_data


def tutorial_recipe():
    """The tutorial's own code, run verbatim."""
    X = torch.linspace(1, 50, 50).reshape(-1, 1)
    torch.manual_seed(71)
    e = torch.randint(-8, 9, (50, 1), dtype=torch.float)
    y = 2 * X + 1 + e
    return X, y


def test_defaults_are_the_tutorial_data():
    X, y = tutorial_recipe()
    data = tutorial_data()
    assert data.X.shape == (50, 1) and data.y.shape == (50, 1)
    assert data.X.dtype == torch.float32 and data.y.dtype == torch.float32
    assert torch.equal(data.X, X)
    assert torch.equal(data.y, y)
    assert data.feature_names == ("x",) and data.target_names == ("y",)


def test_global_random_state_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tutorial_data()
    assert torch.equal(torch.rand(3), expected)


def test_parameters_shape_the_data():
    data = tutorial_data(400, x_start=-2.0, x_stop=3.0, weight=-0.5, bias=4.0, noise_low=-1, noise_high=2, seed=5)
    assert data.n_samples == 400
    assert data.X[0, 0].item() == -2.0 and data.X[-1, 0].item() == 3.0
    noise = data.y - (-0.5 * data.X + 4.0)
    # integer noise up to float32 rounding: y = w·x + b + e and -0.5·x + 4 round ≤ 5 times in all, each by
    # ≤ U32·(|w x| + |b| + |e|) ≤ 6e-8·7.5, so |noise − round(noise)| ≤ γ_5·7.5 ≈ 2.2e-6 < atol = 1e-5
    assert torch.allclose(noise, noise.round(), atol=1e-5)
    assert set(noise.flatten().round().int().tolist()) == {-1, 0, 1, 2}  # both bounds inclusive


def test_seed_changes_noise_and_is_reproducible():
    assert torch.equal(tutorial_data(seed=3).y, tutorial_data(seed=3).y)
    assert not torch.equal(tutorial_data(seed=3).y, tutorial_data(seed=4).y)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_samples": 0}, "positive integer"),
    ({"n_samples": 2.5}, "positive integer"),
    ({"noise_low": 3, "noise_high": 1}, "swap"),
    ({"weight": float("nan")}, "finite"),
    ({"x_stop": float("inf")}, "finite"),
])
def test_bad_arguments_are_refused(kwargs, match):
    args = {"n_samples": kwargs.pop("n_samples")} if "n_samples" in kwargs else {}
    with pytest.raises(ConfigError, match=match):
        tutorial_data(**args, **kwargs)


def test_dataset_checks_shapes_and_names_columns():
    with pytest.raises(ValueError, match="rows"):
        Dataset(torch.zeros(3, 1), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="2-D"):
        Dataset(torch.zeros(3), torch.zeros(3, 1))
    data = Dataset(torch.zeros(3, 2), torch.zeros(3, 2))
    assert data.feature_names == ("x1", "x2") and data.target_names == ("y1", "y2")
    assert "n_samples=3" in repr(data)


def test_a_dataset_from_numpy_and_pandas_keeps_the_names():
    """Issue 14: `tl.Dataset(X, y)` with a DataFrame and a Series (or NumPy arrays) gives float64 tensors, a 1-D y as
    one target, and the frame's names; tensors given as they are stay as they are."""
    import numpy as np
    import pandas as pd
    import torch

    import torchlinreg as tl

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 0.125], "y": [1.0, 0.0, 2.0]})
    data = tl.Dataset(frame[["a", "b"]], frame["y"], sample_weight=np.ones(3))
    assert data.feature_names == ("a", "b") and data.target_names == ("y",)
    assert data.X.dtype == torch.float64 and data.y.shape == (3, 1) and data.sample_weight.shape == (3,)
    np.testing.assert_array_equal(data.X.numpy(), frame[["a", "b"]].to_numpy())  # exact: float64 as given
    plain = tl.Dataset(np.zeros((3, 2)), np.arange(3.0))
    assert plain.feature_names == ("x1", "x2") and plain.target_names == ("y",)
    X = torch.zeros(3, 1)
    assert tl.Dataset(X, torch.zeros(3, 1)).X is X
