import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from torchlinreg.scaling import Standardizer


@pytest.fixture
def problem():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 3)) * [1.0, 50.0, 0.01] + [3.0, 100.0, -0.5]
    Y = X @ rng.normal(size=(3, 2)) + [7.0, -4.0] + rng.normal(size=(80, 2))
    return X, Y


def _lstsq(X, Y):
    """Least-squares (weight (m, d), bias (m,)) with an intercept column."""
    theta = np.linalg.lstsq(np.hstack([X, np.ones((len(X), 1))]), Y, rcond=None)[0]
    return theta[:-1].T, theta[-1]


def test_statistics_match_standard_scaler(problem):
    X, Y = problem
    s = Standardizer.fit(X, Y)
    for data, mean, scale in ((X, s.x_mean, s.x_scale), (Y, s.y_mean, s.y_scale)):
        ref = StandardScaler().fit(data)
        np.testing.assert_allclose(mean, ref.mean_, rtol=1e-12)
        np.testing.assert_allclose(scale, ref.scale_, rtol=1e-12)
    np.testing.assert_allclose(s.transform_X(X), StandardScaler().fit_transform(X), rtol=1e-10, atol=1e-12)


def test_coefficients_learnt_on_standardised_data_unscale_to_the_raw_fit(problem):
    X, Y = problem
    s = Standardizer.fit(X, Y)
    W_s, b_s = _lstsq(s.transform_X(X), s.transform_y(Y))
    W, b = s.unscale_params(W_s, b_s)
    W_raw, b_raw = _lstsq(X, Y)
    np.testing.assert_allclose(W, W_raw, rtol=1e-10)
    np.testing.assert_allclose(b, b_raw, rtol=1e-10)
    via_scaled = s.inverse_y(s.transform_X(X) @ W_s.T + b_s)
    np.testing.assert_allclose(X @ W.T + b, via_scaled, rtol=1e-10)


def test_constant_column_is_only_centred(problem):
    X, Y = problem
    X = X.copy()
    X[:, 1] = 4.2
    s = Standardizer.fit(X, Y)
    ref = StandardScaler().fit(X)
    assert s.x_scale[1] == 1.0 == ref.scale_[1]
    np.testing.assert_allclose(s.transform_X(X)[:, 1], 0.0, atol=1e-12)
    W_s, b_s = _lstsq(s.transform_X(X)[:, [0, 2]], s.transform_y(Y))  # the constant column carries no weight
    W_s = np.insert(W_s, 1, 0.0, axis=1)
    W, b = s.unscale_params(W_s, b_s)
    np.testing.assert_allclose(X @ W.T + b, s.inverse_y(s.transform_X(X) @ W_s.T + b_s), rtol=1e-10)


def test_types_and_dtypes_are_kept(problem):
    X, Y = problem
    s = Standardizer.fit(torch.from_numpy(X), torch.from_numpy(Y))
    Xt = torch.from_numpy(X).float()
    out = s.transform_X(Xt)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert isinstance(s.transform_y(Y), np.ndarray) and s.transform_y(Y).dtype == np.float64
    back = s.inverse_y(s.transform_y(torch.from_numpy(Y)))
    assert back.dtype == torch.float64
    np.testing.assert_allclose(back.numpy(), Y, rtol=1e-12)


def test_unscaled_targets_and_round_trip_through_a_dict(problem):
    X, Y = problem
    s = Standardizer.fit(X, Y, scale_y=False)
    np.testing.assert_array_equal(s.transform_y(Y), Y)
    again = Standardizer.from_dict(s.to_dict())
    for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
        np.testing.assert_array_equal(getattr(again, name), getattr(s, name))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="same, non-zero number of rows"):
        Standardizer.fit(np.ones((5, 2)), np.ones((4, 1)))
