import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from torchlinreg.errors import ConfigError
from torchlinreg.metrics import MetricSums, regression_metrics, train_validation_split


@pytest.fixture
def targets():
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    y_pred = y_true + rng.normal(size=(40, 3)) * [0.5, 3.0, 0.2]
    return y_true, y_pred


def test_averages_match_scikit_learn(targets):
    y_true, y_pred = targets
    got = regression_metrics(y_true, y_pred)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y_true, y_pred), rel=1e-12)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y_true, y_pred), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred), rel=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y_true, y_pred), rel=1e-12)
    assert "per_target" not in got


def test_per_target_values_match_scikit_learn(targets):
    y_true, y_pred = targets
    got = regression_metrics(torch.from_numpy(y_true), torch.from_numpy(y_pred), target_names=["a", "b", "c"])
    assert list(got["per_target"]) == ["a", "b", "c"]
    for j, name in enumerate("abc"):
        t, p = y_true[:, j], y_pred[:, j]
        assert got["per_target"][name] == pytest.approx({
            "mse": skm.mean_squared_error(t, p), "rmse": skm.root_mean_squared_error(t, p),
            "mae": skm.mean_absolute_error(t, p), "r2": skm.r2_score(t, p)}, rel=1e-12)
    with pytest.raises(ValueError, match="2 target names for 3 targets"):
        regression_metrics(y_true, y_pred, target_names=["a", "b"])


def test_one_dimensional_input_is_one_target(targets):
    y_true, y_pred = targets[0][:, 0], targets[1][:, 0]
    assert regression_metrics(y_true, y_pred)["r2"] == pytest.approx(skm.r2_score(y_true, y_pred), rel=1e-12)


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_constant_target_r2_follows_scikit_learn(targets, offset):
    y_true, y_pred = targets
    y_true = y_true.copy()
    y_true[:, 1] = 3.0
    y_pred = y_pred.copy()
    y_pred[:, 1] = 3.0 + offset  # perfect (R² 1) or not (R² 0)
    assert regression_metrics(y_true, y_pred)["r2"] == pytest.approx(skm.r2_score(y_true, y_pred), rel=1e-12)
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
    for sums in (chunked, merged):
        got = sums.result()
        for key in ("mse", "rmse", "mae", "r2"):
            assert got[key] == pytest.approx(reference[key], rel=1e-12), key
    with pytest.raises(ValueError, match="no rows"):
        MetricSums(1).result()
