import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from torchlinreg.scaling import Standardizer

from bounds import U64, gamma


def mean_tol(a):
    """Two computations of column means, each a sum of n terms: γ_{n+1}·Σ|x|/|Σx| relative, ×2 sides, ×10."""
    a = np.asarray(a, dtype=np.float64)
    return 20 * gamma(len(a) + 1) * np.abs(a).sum(0) / np.abs(a.sum(0))


def ls_tol(A, Y):
    """LS forward-error bound m·n·u·(κ + κ²·‖r‖/(‖A‖‖x‖)) of a solution of min ‖A x - y‖ (Higham §20.1), ×10."""
    s = np.linalg.svd(A, compute_uv=False)
    x = np.linalg.lstsq(A, Y, rcond=None)[0]
    kappa, eta = s[0] / s[-1], np.linalg.norm(Y - A @ x) / (s[0] * np.linalg.norm(x))
    return 10 * A.shape[0] * A.shape[1] * U64 * (kappa + kappa ** 2 * eta)


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
        assert (np.abs(mean - ref.mean_) <= mean_tol(data) * np.abs(ref.mean_)).all()  # sums of n terms
        # spread from centred squares (a rounded mean moves them only to second order): a sum of n positive
        # terms and a square root, γ_{n+3} per side, ×2, ×10
        np.testing.assert_allclose(scale, ref.scale_, rtol=20 * gamma(len(data) + 3), atol=0)
    # (x - mean) / scale: the two means differ by ≤ mean_tol·|mean| (absolute error / scale in the output's
    # units), then a subtraction and a division (3u relative), ×10 in atol and rtol
    s_ref = StandardScaler().fit(X)
    atol = float(np.max(mean_tol(X) * np.abs(s_ref.mean_) / s_ref.scale_))
    np.testing.assert_allclose(s.transform_X(X), StandardScaler().fit_transform(X), rtol=30 * U64 + 10 * atol,
                               atol=10 * atol)


def test_coefficients_learnt_on_standardised_data_unscale_to_the_raw_fit(problem):
    X, Y = problem
    s = Standardizer.fit(X, Y)
    W_s, b_s = _lstsq(s.transform_X(X), s.transform_y(Y))
    W, b = s.unscale_params(W_s, b_s)
    W_raw, b_raw = _lstsq(X, Y)
    # two LS solutions of the same problem (raw and standardised design): the raw one within the LS forward-error
    # bound of [X, 1] (the larger), normwise (atol relative to the largest coefficient)
    tol = ls_tol(np.hstack([X, np.ones((len(X), 1))]), Y)
    assert tol < 1e-6  # still a test: a wrong unscaling moves the coefficients by O(1)
    size = np.linalg.norm(np.hstack([W_raw, b_raw[:, None]]))  # the bound is on ‖[W, b]‖
    np.testing.assert_allclose(W, W_raw, rtol=tol, atol=tol * size)
    np.testing.assert_allclose(b, b_raw, rtol=tol, atol=tol * size)
    via_scaled = s.inverse_y(s.transform_X(X) @ W_s.T + b_s)
    # the same parameters two ways: each prediction a sum of d + 1 terms after affine maps, γ_{d+4} relative to
    # |X||W| + |b|, ×10 (loose at 1e-10: these predictions are not near 0)
    np.testing.assert_allclose(X @ W.T + b, via_scaled, rtol=1e-10)


def test_constant_column_is_only_centred(problem):
    X, Y = problem
    X = X.copy()
    X[:, 1] = 4.2
    s = Standardizer.fit(X, Y)
    ref = StandardScaler().fit(X)
    assert s.x_scale[1] == 1.0 == ref.scale_[1]
    np.testing.assert_allclose(s.transform_X(X)[:, 1], 0.0, atol=10 * gamma(len(X) + 1) * 4.2)  # 4.2 - mean of n 4.2s
    W_s, b_s = _lstsq(s.transform_X(X)[:, [0, 2]], s.transform_y(Y))  # the constant column carries no weight
    W_s = np.insert(W_s, 1, 0.0, axis=1)
    W, b = s.unscale_params(W_s, b_s)
    # as above: the same parameters two ways, γ_{d+4} relative to |X||W| + |b|; 1e-10 is loose
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
    # (y - m) / s · s + m: four roundings, each relative to |y| + |m| at most, ×10
    np.testing.assert_allclose(back.numpy(), Y, rtol=0, atol=40 * U64 * float(np.max(np.abs(Y) + np.abs(s.y_mean))))


def test_unscaled_targets_and_round_trip_through_a_dict(problem):
    X, Y = problem
    s = Standardizer.fit(X, Y, scale_y=False)
    np.testing.assert_array_equal(s.transform_y(Y), Y)  # exact: (y - 0) / 1
    again = Standardizer.from_dict(s.to_dict())
    for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
        np.testing.assert_array_equal(getattr(again, name), getattr(s, name))  # exact: float64 through a dict


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="same, non-zero number of rows"):
        Standardizer.fit(np.ones((5, 2)), np.ones((4, 1)))
