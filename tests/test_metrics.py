import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from bounds import U64, gamma
from torchlinreg.errors import ConfigError
from torchlinreg.metrics import MetricSums, regression_metrics, train_validation_split


def same_metrics(got: dict, reference: dict, n: int) -> None:
    """Metrics of n rows computed in two orders (ours with NumPy's pairwise sums, scikit-learn's np.average).
    MSE and MAE are sums of n terms of ≤ 2 roundings, then a division: each within γ_{n+3} relative of the exact
    value, so ≤ 2γ_{n+3} apart; RMSE half that plus a rounding. R² = 1 − SS_res/SS_tot: each sum has relative error
    ≤ γ_{n+3} (SS_tot's centring error cancels to first order, as Σ(y − ȳ) = 0), so |ΔR²| ≤ 2·2γ_{n+3}·|1 − R²|.
    Averaging over targets adds a few roundings of the values themselves. ×10 on all for slack."""
    rel = 10 * 2 * gamma(n + 3)
    for key in ("mse", "rmse", "mae"):
        assert got[key] == pytest.approx(reference[key], rel=rel, abs=0), key
    r2_abs = 10 * (4 * gamma(n + 3) * abs(1 - reference["r2"]) + 4 * U64 * abs(reference["r2"]))
    assert got["r2"] == pytest.approx(reference["r2"], rel=0, abs=r2_abs), "r2"


def sklearn_metrics(t, p) -> dict:
    return {"mse": skm.mean_squared_error(t, p), "rmse": skm.root_mean_squared_error(t, p),
            "mae": skm.mean_absolute_error(t, p), "r2": skm.r2_score(t, p)}


@pytest.fixture
def targets():
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    y_pred = y_true + rng.normal(size=(40, 3)) * [0.5, 3.0, 0.2]
    return y_true, y_pred


def test_averages_match_scikit_learn(targets):
    y_true, y_pred = targets
    got = regression_metrics(y_true, y_pred)
    same_metrics(got, sklearn_metrics(y_true, y_pred), len(y_true))  # the bound of two summation orders
    assert "per_target" not in got


def test_per_target_values_match_scikit_learn(targets):
    y_true, y_pred = targets
    got = regression_metrics(torch.from_numpy(y_true), torch.from_numpy(y_pred), target_names=["a", "b", "c"])
    assert list(got["per_target"]) == ["a", "b", "c"]
    for j, name in enumerate("abc"):
        t, p = y_true[:, j], y_pred[:, j]
        same_metrics(got["per_target"][name], sklearn_metrics(t, p), len(t))  # the bound of two summation orders
    with pytest.raises(ValueError, match="2 target names for 3 targets"):
        regression_metrics(y_true, y_pred, target_names=["a", "b"])


def test_one_dimensional_input_is_one_target(targets):
    y_true, y_pred = targets[0][:, 0], targets[1][:, 0]
    same_metrics(regression_metrics(y_true, y_pred), sklearn_metrics(y_true, y_pred), len(y_true))


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_constant_target_r2_follows_scikit_learn(targets, offset):
    y_true, y_pred = targets
    y_true = y_true.copy()
    y_true[:, 1] = 3.0
    y_pred = y_pred.copy()
    y_pred[:, 1] = 3.0 + offset  # perfect (R² 1) or not (R² 0)
    same_metrics(regression_metrics(y_true, y_pred), sklearn_metrics(y_true, y_pred), len(y_true))
    per = regression_metrics(y_true, y_pred, target_names="xyz")["per_target"]["y"]
    assert per["r2"] == (1.0 if offset == 0 else 0.0)


def test_bad_inputs_are_refused(targets):
    y_true, y_pred = targets
    with pytest.raises(ValueError, match="same shape"):
        regression_metrics(y_true, y_pred[:, :2])
    with pytest.raises(ValueError, match="inf or NaN"):
        regression_metrics(y_true, np.full_like(y_pred, np.nan))


@pytest.mark.parametrize("n, fraction", [(50, 0.2), (7, 0.5), (10, 0.25), (1000, 0.001), (2, 0.5)])
def test_split_is_seeded_disjoint_covering_and_sized(n, fraction):
    train, val = train_validation_split(n, fraction, seed=3)
    assert len(val) == round(n * fraction) and len(train) == n - len(val)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(n))
    again = train_validation_split(n, fraction, seed=3)
    np.testing.assert_array_equal(again[0], train)
    np.testing.assert_array_equal(again[1], val)


def test_split_depends_on_the_seed_only():
    state = np.random.get_state()
    first = train_validation_split(100, 0.3, seed=1)[1]
    assert not np.array_equal(first, train_validation_split(100, 0.3, seed=2)[1])
    assert np.array_equal(np.random.get_state()[1], state[1])  # the global generator is untouched


@pytest.mark.parametrize("n, fraction, match", [
    (10, 0.01, "leaves no validation rows; use a fraction from 1/10 to 9/10"),
    (10, 0.99, "leaves no training rows"),
    (1, 0.5, "at least 2 rows"),
    (10, 0.0, "between 0 and 1"),
    (10, 1.0, "between 0 and 1"),
    (10, float("nan"), "between 0 and 1"),
])
def test_split_that_leaves_a_side_empty_says_how_to_fix_it(n, fraction, match):
    with pytest.raises(ConfigError, match=match):
        train_validation_split(n, fraction, seed=0)


def test_metric_sums_of_chunks_and_parts_equal_the_metrics_of_all_rows():
    rng = np.random.default_rng(8)
    y = rng.normal(1e4, 2.0, (1001, 3))  # a large mean next to the spread: R² must not lose its digits
    y[:, 2] = 5.0  # a constant target: R² as scikit-learn's force_finite
    y_pred = y + rng.normal(0, 0.5, y.shape)
    y_pred[:, 2] = 5.0
    reference = regression_metrics(y, y_pred)
    chunked = MetricSums(3)
    for start in range(0, 1001, 77):
        chunked.update(y[start:start + 77], y_pred[start:start + 77])
    parts = [MetricSums(3).update(y[:400], y_pred[:400]), MetricSums(3).update(y[400:], y_pred[400:])]
    merged = MetricSums.from_vector(parts[0].to_vector()).merge(MetricSums.from_vector(parts[1].to_vector()))
    # Σr², Σ|r| in chunks: sums of n terms in another order, ≤ 2γ_{n+3} relative apart. R²'s SS_tot merged as Chan
    # et al.: m2 += m2_b + δ²·n_a n_b/n, where δ = mean_b − mean_a carries the means' rounding: the chunk's
    # (γ_{k_b}·max|y|) and the running mean's (the first chunk's γ_{k_1} plus ≤ 2u·max|y| per merge), ε_j in all;
    # |Δm2| ≤ Σ_j 2|δ_j|·w_j·ε_j + γ_{n+3}·m2 (first order), so
    # |ΔR²| ≤ (1 − R²)·(|Δm2|/m2 + 2γ_{n+3}) per target. Computed here along the same merges; ×10 for slack.
    def merge_error(starts, stops):
        n_a, mean_a, total = 0, np.zeros(3), 0.0
        for j, (lo, hi) in enumerate(zip(starts, stops)):
            n_b, mean_b = hi - lo, y[lo:hi].mean(axis=0)
            if n_a:
                eps = (gamma(n_b) + gamma(stops[0] - starts[0]) + 2 * j * U64) * np.abs(y).max(axis=0)
                total = total + 2 * np.abs(mean_b - mean_a) * (n_a * n_b / (n_a + n_b)) * eps
            mean_a, n_a = mean_a + (mean_b - mean_a) * n_b / (n_a + n_b), n_a + n_b
        return total

    m2 = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    r2 = 1 - ((y - y_pred) ** 2).sum(axis=0) / np.where(m2 == 0, 1, m2)
    n = len(y)
    starts = list(range(0, 1001, 77))
    for sums, spans in ((chunked, (starts, [min(s + 77, n) for s in starts])), (merged, ([0, 400], [400, n]))):
        got = sums.result()
        for key in ("mse", "rmse", "mae"):
            assert got[key] == pytest.approx(reference[key], rel=10 * 2 * gamma(n + 3), abs=0), key
        relative_m2 = merge_error(*spans) / np.where(m2 == 0, 1, m2) + 2 * gamma(n + 3)
        r2_abs = 10 * (np.mean(np.abs(1 - r2) * relative_m2) + 4 * U64)  # the constant target: exact (R² = 1)
        assert got["r2"] == pytest.approx(reference["r2"], rel=0, abs=r2_abs), ("r2", r2_abs)
    with pytest.raises(ValueError, match="no rows"):
        MetricSums(1).result()
