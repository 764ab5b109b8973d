"""Exact ridge from the R factor (issue 18 item 2): against scikit-learn's Ridge and RidgeCV, and a brute-force
GCV from the full hat matrix in NumPy.

Tolerance: 1e-10 relative (the figure issue 18 sets against scikit-learn), on well-conditioned data, where both
sides are accurate to about eps times the ridge problem's condition number (below 1e4 here).
"""

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.linear_model import Ridge, RidgeCV  # noqa: E402

from torchlinreg.errors import ConfigError  # noqa: E402
from torchlinreg.ridge_solve import ridge, ridge_cv, ridge_path, ridge_source  # noqa: E402

from realdata import load, numeric_design  # noqa: E402

REL = 1e-10


def close(a, b, rel=REL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(np.abs(b).max(), 1.0)
    assert np.abs(a - b).max() <= rel * scale, (a, b)


def data(n=60, d=5, m=1, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * [1.0, 10.0, 0.1, 3.0, 1.0][:d] + 5.0
    coef = rng.normal(size=(d, m))
    y = X @ coef + 2.0 + rng.normal(scale=0.5, size=(n, m))
    return X, (y[:, 0] if m == 1 else y), rng.uniform(0.2, 3.0, size=n)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("m", [1, 3])
def test_ridge_matches_scikit_learn(fit_intercept, weighted, m):
    X, y, w = data(m=m)
    sw = w if weighted else None
    for alpha in (0.01, 1.0, 250.0):
        ref = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd").fit(X, y, sample_weight=sw)
        got = ridge(X, y, alpha, fit_intercept=fit_intercept, sample_weight=sw)
        close(got.coef.reshape(ref.coef_.shape), ref.coef_)
        close(got.intercept, np.broadcast_to(ref.intercept_, got.intercept.shape))
        close(got.predict(X).reshape(np.shape(y)), ref.predict(X))


def test_an_alpha_per_target_matches_scikit_learn():
    X, y, w = data(m=3)
    alpha = np.array([0.1, 5.0, 80.0])
    ref = Ridge(alpha=alpha, solver="svd").fit(X, y, sample_weight=w)
    got = ridge(X, y, alpha, sample_weight=w)
    close(got.coef, ref.coef_)
    close(got.intercept, np.broadcast_to(ref.intercept_, got.intercept.shape))
    assert got.alpha.tolist() == alpha.tolist()


@pytest.mark.parametrize("name", ["diabetes", "linnerud", "stackloss"])
def test_ridge_on_real_data_matches_scikit_learn(name):
    X, Y = numeric_design(*load(name))
    y = Y.to_numpy() if Y.shape[1] > 1 else Y.iloc[:, 0].to_numpy()
    for alpha in (0.5, 20.0):
        ref = Ridge(alpha=alpha, solver="cholesky").fit(X.to_numpy(), y)
        got = ridge(X, Y, alpha)
        close(got.coef.reshape(ref.coef_.shape), ref.coef_)
        close(got.intercept, np.broadcast_to(ref.intercept_, got.intercept.shape))
        assert got.feature_names == tuple(X.columns)


def test_alpha_zero_is_the_minimum_norm_least_squares_solution():
    from torchlinreg.solve import lstsq

    X, y, _ = data()
    X = np.hstack([X, X[:, :1] + X[:, 1:2]])  # rank-deficient
    with pytest.warns(Warning):
        ref = lstsq(X, y)
    got = ridge(X, y, 0.0)
    close(got.coef, ref.coef, 1e-8)  # the dependent group's null space: 1e-8 of the scaled norm (solve.rank)
    close(got.intercept, ref.intercept, 1e-8)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "a", [[1.0]], [1.0, 2.0]])
def test_a_bad_alpha_is_a_config_error(bad):
    X, y, _ = data()
    with pytest.raises(ConfigError, match="ridge penalty"):
        ridge(X, y, bad)


def _csv(tmp_path, X, Y, w):
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    for t in range(Y.shape[1]):
        frame[f"y{t}"] = Y[:, t]
    frame["w"] = w
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False, float_format="%.17g")
    return path, [f"y{t}" for t in range(Y.shape[1])]


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_streamed_data_give_the_same_ridge(tmp_path, fit_intercept):
    from torchlinreg.sources import open_source

    X, Y, w = data(n=200, m=2)
    path, targets = _csv(tmp_path, X, Y, w)
    source = open_source(path, target=targets, weights="w", stream=True)
    got = ridge_source(source, [2.0, 7.0], chunk_rows=17, fit_intercept=fit_intercept)
    ref = Ridge(alpha=[2.0, 7.0], fit_intercept=fit_intercept, solver="svd").fit(X, Y, sample_weight=w)
    close(got.coef, ref.coef_)
    close(got.intercept, np.broadcast_to(ref.intercept_, got.intercept.shape))
    # GCV from the streamed R factor equals GCV from the rows in memory (the same R, rows grouped differently)
    streamed = ridge_source(source, alphas=(0.1, 3.0, 40.0), chunk_rows=17, fit_intercept=fit_intercept)
    whole = ridge_cv(X, Y, (0.1, 3.0, 40.0), mode="gcv", sample_weight=w, fit_intercept=fit_intercept)
    close(streamed.scores, whole.scores)
    assert streamed.alpha.tolist() == whole.alpha.tolist()


# --- generalised cross-validation --------------------------------------------------------------------------

def brute_gcv(X, y, w, alpha, fit_intercept):
    """n·RSS/(n - tr H)² with H the full n × n hat matrix of the weighted ridge, intercept unpenalised."""
    sw = np.sqrt(w)
    Xw = sw[:, None] * X
    if fit_intercept:
        Z = np.hstack([Xw, sw[:, None]])
        P = np.diag([alpha] * X.shape[1] + [0.0])
    else:
        Z, P = Xw, alpha * np.eye(X.shape[1])
    H = Z @ np.linalg.solve(Z.T @ Z + P, Z.T)
    r = sw[:, None] * y.reshape(len(y), -1) - H @ (sw[:, None] * y.reshape(len(y), -1))
    n = len(y)
    return n * np.sum(r ** 2, axis=0) / (n - np.trace(H)) ** 2


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gcv_equals_the_brute_force_gcv_of_the_hat_matrix(fit_intercept):
    X, y, w = data(n=40, m=2, seed=5)
    alphas = (0.01, 0.3, 2.0, 30.0, 500.0)
    got = ridge_cv(X, y, alphas, mode="gcv", sample_weight=w, fit_intercept=fit_intercept)
    want = np.stack([brute_gcv(X, y, w, a, fit_intercept) for a in alphas])
    close(got.scores, want, 1e-9)  # the brute force solves normal equations: eps · cond(ZᵀZ) ≈ 1e-12 here
    best = alphas[int(np.argmin(want.mean(axis=1)))]
    assert got.alpha.tolist() == [best, best]
    close(got.coef, Ridge(alpha=best, fit_intercept=fit_intercept).fit(X, y, sample_weight=w).coef_)


def test_gcv_of_unweighted_rows_is_scikit_learns_gcv_where_they_agree():
    """scikit-learn's RidgeCV scores by leave-one-out, not GCV; GCV equals LOO when every leverage is tr H / n,
    which does not hold in general: so the check is against the brute force, and GCV's choice is a sensible one."""
    X, y, _ = data(n=80, seed=8)
    alphas = np.logspace(-2, 4, 13)
    got = ridge_cv(X, y, alphas, mode="gcv")
    want = np.stack([brute_gcv(X, y, np.ones(len(y)), a, True) for a in alphas])
    close(got.scores, want, 1e-9)
    loo = RidgeCV(alphas=alphas).fit(X, y).alpha_
    assert abs(np.log10(got.alpha[0]) - np.log10(loo)) <= 1.0  # neighbours on the grid


# --- efficient leave-one-out -------------------------------------------------------------------------------

@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha_per_target", [False, True])
def test_loo_matches_scikit_learns_ridgecv(fit_intercept, weighted, alpha_per_target):
    X, y, w = data(n=30, m=2, seed=11)
    y[:, 1] += 3.0 * np.random.default_rng(12).normal(size=30)  # a noisier target wants a larger alpha
    sw = w if weighted else None
    alphas = (0.01, 0.1, 1.0, 10.0, 100.0)
    ref = RidgeCV(alphas=alphas, fit_intercept=fit_intercept, alpha_per_target=alpha_per_target,
                  store_cv_results=True).fit(X, y, sample_weight=sw)
    got = ridge_cv(X, y, alphas, fit_intercept=fit_intercept, sample_weight=sw, alpha_per_target=alpha_per_target)
    assert got.alpha.tolist() == np.broadcast_to(ref.alpha_, (2,)).tolist()
    close(got.coef, ref.coef_)
    close(got.intercept, np.broadcast_to(ref.intercept_, got.intercept.shape))
    best = -got.scores.min(axis=0) if alpha_per_target else -got.scores.mean(axis=1).min()
    close(best, ref.best_score_)


def test_loo_errors_are_those_of_refitting_without_each_row():
    X, y, w = data(n=15, m=1, seed=2)
    path, Xa, Y, wa = ridge_path(X, y, sample_weight=w)
    errors = path.loo_errors(Xa, Y, wa, 2.0)[:, 0]
    for i in (0, 7, 14):
        keep = np.arange(15) != i
        fit = Ridge(alpha=2.0).fit(X[keep], y[keep], sample_weight=w[keep])
        close(errors[i], np.sqrt(w[i]) * (y[i] - fit.predict(X[i:i + 1])[0]))


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_wide_constant_and_collinear_columns_match_scikit_learn(fit_intercept):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 20))  # fewer rows than features
    X[:, 3] = 4.0  # a constant column
    X[:, 5] = 2.0 * X[:, 0]  # a collinear one
    y = rng.normal(size=8)
    ref = Ridge(alpha=0.7, fit_intercept=fit_intercept).fit(X, y)
    got = ridge(X, y, 0.7, fit_intercept=fit_intercept)
    close(got.coef[0], ref.coef_)
    close(got.intercept[0], ref.intercept_)
    refcv = RidgeCV(alphas=(0.01, 0.1, 1.0, 10.0), fit_intercept=fit_intercept).fit(X, y)
    gotcv = ridge_cv(X, y, (0.01, 0.1, 1.0, 10.0), fit_intercept=fit_intercept)
    assert gotcv.alpha[0] == refcv.alpha_
    close(-gotcv.scores.min(), refcv.best_score_)
