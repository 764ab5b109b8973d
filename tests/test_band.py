"""The two statistics the pictures draw, against statsmodels: the confidence band of the least-squares line
(``OLS(...).get_prediction().conf_int()``) and the normal quantiles of a Q-Q plot (``ProbPlot``)."""

import numpy as np
import pytest

from bounds import U64, gamma
from torchlinreg import make_regression, tutorial_data
from torchlinreg.band import line_band, normal_quantiles

sm = pytest.importorskip("statsmodels.api")


def _statsmodels_band(x, y, at, level):
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    prediction = fit.get_prediction(sm.add_constant(at))
    return prediction.predicted_mean, prediction.conf_int(alpha=1 - level)


@pytest.mark.parametrize("level", [0.95, 0.5])
@pytest.mark.parametrize("rows", ["tutorial", "shifted"])
def test_the_band_is_statsmodels_mean_confidence_interval(rows, level):
    if rows == "tutorial":
        data = tutorial_data()
        x, y = data.X.double().numpy()[:, 0], data.y.double().numpy()[:, 0]
    else:  # normal x away from the origin, fewer rows
        data = make_regression(40, 1, 1, noise=3.0)
        x, y = 20 + 3 * data.X.numpy()[:, 0], data.y.numpy()[:, 0]
    at = np.linspace(x.min() - 1, x.max() + 1, 37)
    fit, low, high = line_band(x, y, at, level)
    expected_fit, expected = _statsmodels_band(x, y, at, level)
    # Both are float64 least-squares fits of the rows, backward stable (our centred sums, statsmodels' SVD
    # pseudo-inverse): the line's values and s move by ≲ κ²·γ_n relative (Higham 20.1, κ = cond([1, x]),
    # κ² for the residual's share), the t quantile (scipy.special.stdtrit here, scipy.stats.t.ppf there)
    # by a few ulps. ×10 for the constants: ≈ 2e-10 relative for the tutorial (κ ≈ 60, n = 50).
    kappa = np.linalg.cond(np.column_stack([np.ones_like(x), x]))
    rtol = 10 * kappa**2 * gamma(len(x)) + 16 * U64
    assert rtol < 1e-8  # a tolerance that could still catch a wrong formula (the t or z quantile: ~4%)
    scale = np.abs(expected_fit) + (expected[:, 1] - expected[:, 0])
    np.testing.assert_allclose(fit, expected_fit, rtol=0, atol=rtol * scale.max())
    np.testing.assert_allclose(low, expected[:, 0], rtol=0, atol=rtol * scale.max())
    np.testing.assert_allclose(high, expected[:, 1], rtol=0, atol=rtol * scale.max())
    half = (high - low) / 2
    np.testing.assert_allclose(half, (expected[:, 1] - expected[:, 0]) / 2, rtol=rtol)  # the width on its own


def test_no_band_from_too_few_rows_or_one_x():
    at = np.array([0.0, 1.0])
    assert line_band(np.array([1.0, 2.0]), np.array([1.0, 3.0]), at) is None  # n - 2 = 0 degrees of freedom
    assert line_band(np.full(5, 2.0), np.arange(5.0), at) is None  # every x the same: no slope
    x, y = np.array([1.0, 2.0, np.nan, 3.0, 4.0]), np.array([1.0, 2.5, 7.0, 2.9, np.inf])
    band = line_band(x, y, at)  # the rows with NaN or inf are left out: those of x = 1, 2, 3
    expected_fit, expected = _statsmodels_band(x[:4][[0, 1, 3]], y[[0, 1, 3]], at, 0.95)
    # three rows, κ([1, x]) ≈ 6: a few hundred ulps at most
    np.testing.assert_allclose(band[0], expected_fit, rtol=1e-12)
    np.testing.assert_allclose(np.column_stack(band[1:]), expected, rtol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 8, 10, 11, 50, 1001])
def test_normal_quantiles_are_rs_qqnorm(n):
    """R's ppoints: a = 3/8 up to 10 values, 1/2 beyond; statsmodels' ProbPlot with the same a."""
    a = 3 / 8 if n <= 10 else 1 / 2
    expected = sm.ProbPlot(np.arange(n, dtype=float), a=a).theoretical_quantiles
    # Φ⁻¹ of the same plotting positions, each a quotient of exact small integers (≤ 1 rounding apart between the
    # two): |Δq| ≤ 2u·p / φ(q) from the position, plus the two ndtri's few ulps of |q|
    from scipy.special import ndtr

    q = normal_quantiles(n)
    density = np.exp(-expected**2 / 2) / np.sqrt(2 * np.pi)
    bound = 2 * U64 * ndtr(expected) / density + 8 * U64 * np.abs(expected)
    assert (np.abs(q - expected) <= bound).all()
    assert np.all(np.diff(q) > 0) and np.allclose(q, -q[::-1], rtol=0, atol=bound.max())  # increasing, symmetric
