"""scikit-learn's LinearRegression contract (issue 18): the parameters, float32, minimum norm, positive=True
(non-negative least squares), scipy.sparse input and score, each against scikit-learn computed here."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
import scipy.sparse as sp  # noqa: E402
from sklearn import linear_model  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import torchlinreg  # noqa: E402
from torchlinreg import LinearRegression  # noqa: E402
from torchlinreg.errors import ConfigError, RankDeficiencyWarning  # noqa: E402
from torchlinreg.nnls import nnls, nonnegative_lstsq, positive_from_accumulator  # noqa: E402
from torchlinreg.solve import QRAccumulator  # noqa: E402

import realdata  # noqa: E402

# gd stops at its stopping rule (loss improved < 1e-12 relative): the loss's excess is ~1e-12 relative, so the
# coefficients' error normwise is ~sqrt(1e-12)·κ ≈ 1e-6·κ of the scaled design (κ ≲ 10 here), loose
GD_RTOL = 1e-5
EXACT_RTOL = 1e-10  # both exact (QR/SVD) on κ ≲ 1e2 designs: m·n·u·κ ≈ 1e-11 (Higham §20.1 bound), ×10


def data(kind, *, n=40, d=5, seed=0):
    """(X, y) of a kind: random, rank_deficient (a duplicated and a constant column), sparse (CSR, 70% zeros),
    float32."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * [1, 10, 0.1, 1, 5][:d] + 2
    if kind == "sparse":
        X = X * (rng.uniform(size=X.shape) < 0.3)
    if kind == "rank_deficient":
        X = np.c_[X, X[:, 1], np.full(n, 3.0)]
    y = X[:, :d] @ np.linspace(-1, 2, d) + 0.3 * rng.normal(size=n) + 1
    if kind == "float32":
        return X.astype(np.float32), y.astype(np.float32)
    return (sp.csr_matrix(X) if kind == "sparse" else X), y


@pytest.mark.parametrize("kind", ["random", "rank_deficient", "sparse", "float32"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("solver, positive", [("gd", False), ("exact", False), ("exact", True)])
@pytest.mark.parametrize("weighted", [False, True])
def test_every_combination_matches_sklearn(kind, fit_intercept, solver, positive, weighted):
    X, y = data(kind)
    w = np.random.default_rng(2).uniform(0, 2, size=X.shape[0]) if weighted else None
    dense = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)  # sklearn: no sparse with positive
    ref = linear_model.LinearRegression(fit_intercept=fit_intercept, positive=positive).fit(
        dense, np.float64(y), sample_weight=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)
        reg = LinearRegression(solver=solver, fit_intercept=fit_intercept, positive=positive, copy_X=False,
                               n_jobs=2).fit(X, y, sample_weight=w)
    # float32 data: rounded to float32 on the way out (u32 = 6e-8 relative), ×10; else the solver's figure
    rtol = 1e-6 if kind == "float32" else GD_RTOL if solver == "gd" and not sp.issparse(X) else EXACT_RTOL
    size = np.max(np.abs(ref.coef_))  # normwise: the minimum-norm answer on rank-deficient data
    if not (positive and kind == "rank_deficient"):  # tied columns: non-negative coefficients are not unique
        np.testing.assert_allclose(reg.coef_, ref.coef_, rtol=rtol, atol=rtol * size)
        np.testing.assert_allclose(reg.intercept_, ref.intercept_, rtol=rtol, atol=rtol * size)
    pred = reg.predict(X)
    np.testing.assert_allclose(pred, ref.predict(dense), rtol=rtol, atol=rtol * np.max(np.abs(y)) * 10)
    out = np.float32 if kind == "float32" else np.float64  # scikit-learn keeps float32
    assert reg.coef_.dtype == pred.dtype == out and np.asarray(reg.intercept_).dtype == out
    # score: scikit-learn's centred R² of the predictions, with and without an intercept (1 - R² carries rtol)
    assert reg.score(X, y, sample_weight=w) == pytest.approx(ref.score(dense, y, sample_weight=w), abs=10 * rtol)


def test_explicit_dtype_keeps_float64_attributes():
    X, y = data("float32")
    reg = LinearRegression(solver="exact", dtype="float64").fit(X, y)
    assert reg.coef_.dtype == np.float64 and reg.predict(X).dtype == np.float64
    assert LinearRegression(solver="exact").fit(X, y).predict(np.float64(X)).dtype == np.float64  # as sklearn


def test_copy_x_and_n_jobs_are_accepted_and_x_is_never_written():
    X, y = data("random")
    before = X.copy()
    for copy_X in (True, False):
        LinearRegression(copy_X=copy_X, n_jobs=-1).fit(X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_array_equal(X, before)
    assert {"copy_X", "n_jobs", "positive", "fit_intercept"} <= set(LinearRegression().get_params())


def test_fit_intercept_in_pipeline_and_grid_search():
    X, y = data("random")
    search = GridSearchCV(make_pipeline(StandardScaler(), LinearRegression(solver="exact")),
                          {"linearregression__fit_intercept": [True, False]}, cv=3).fit(X, y)
    ref = GridSearchCV(make_pipeline(StandardScaler(), linear_model.LinearRegression()),
                       {"linearregression__fit_intercept": [True, False]}, cv=3).fit(X, y)
    assert search.best_params_ == ref.best_params_ == {"linearregression__fit_intercept": True}
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"],
                               rtol=EXACT_RTOL)
    grid = GridSearchCV(LinearRegression(), {"fit_intercept": [True, False]}, cv=3).fit(X, y)
    plain = GridSearchCV(linear_model.LinearRegression(), {"fit_intercept": [True, False]}, cv=3).fit(X, y)
    assert grid.best_params_ == plain.best_params_
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"],
                               rtol=GD_RTOL)  # gd's convergence; R² ≤ 1 carries it


# --- minimum norm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["gd", "exact"])
def test_one_row_gives_zero_as_sklearn(solver):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)
        reg = LinearRegression(solver=solver).fit([[1.0]], [0.0])
    assert reg.coef_.tolist() == [0.0] and reg.intercept_ == 0.0
    assert linear_model.LinearRegression().fit([[1.0]], [0.0]).coef_.tolist() == [0.0]


def test_square_design_two_targets_as_one_and_as_sklearn():
    rng = np.random.default_rng(0)
    X, Y, fresh = rng.normal(size=(100, 100)), rng.normal(size=(100, 2)), rng.normal(size=(30, 100))
    ref = linear_model.LinearRegression().fit(X, Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loss → 0 (interpolation) geometrically: the relative rule never holds
        two = LinearRegression(epochs=600).fit(X, Y)
        one = LinearRegression(epochs=600).fit(X, Y[:, 0])
    # tolerance from the loss reached (asserted): sklearn interpolates, so on the training rows the difference
    # is our residual, ≤ sqrt(n·m·loss_) ≈ 1e-6; on fresh rows the minimum-norm coefficients' error, which the
    # least singular value (~0.06 here) amplifies ~20× more: 1e-4 absolute on predictions of size ~100
    assert two.loss_ < 1e-12 and one.loss_ < 1e-12
    for Z, atol in ((X, 2e-6), (fresh, 1e-4)):
        np.testing.assert_allclose(two.predict(Z), ref.predict(Z), atol=atol, rtol=0)
        np.testing.assert_allclose(two.predict(Z)[:, 0], one.predict(Z), atol=atol, rtol=0)


# --- positive=True --------------------------------------------------------------------------------

NNLS_RTOL = 1e-8  # the figure against scikit-learn (scipy.optimize.nnls)


def assert_positive_matches(X, Y, w=None, fit_intercept=True):
    ref = linear_model.LinearRegression(positive=True, fit_intercept=fit_intercept).fit(X, Y, sample_weight=w)
    reg = LinearRegression(solver="exact", positive=True, fit_intercept=fit_intercept).fit(X, Y, sample_weight=w)
    size = np.max(np.abs(ref.coef_), initial=1e-300)
    np.testing.assert_allclose(reg.coef_, ref.coef_, rtol=NNLS_RTOL, atol=NNLS_RTOL * size)
    np.testing.assert_allclose(reg.predict(X), ref.predict(X), rtol=NNLS_RTOL,
                               atol=NNLS_RTOL * np.max(np.abs(ref.predict(X))))
    assert np.all(reg.coef_ >= 0)
    return reg, ref


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_positive_matches_sklearn_on_random_data_with_weights_and_two_targets(fit_intercept):
    X, y = data("random")
    Y = np.c_[y, -y + X[:, 0], -np.abs(y)]  # the last: no feature helps, all coefficients 0 (still answers)
    w = np.random.default_rng(3).uniform(0, 2, size=len(y))
    assert_positive_matches(X, y, fit_intercept=fit_intercept)
    reg, _ = assert_positive_matches(X, Y, w, fit_intercept=fit_intercept)
    assert reg.coef_.shape == (3, X.shape[1]) and np.any(reg.coef_ == 0)


def test_positive_on_sparse_data_equals_sklearn_on_the_dense_matrix():
    X, y = data("sparse")  # scikit-learn refuses sparse X with positive=True: its dense answer is the reference
    ref = linear_model.LinearRegression(positive=True).fit(X.toarray(), y)
    for fmt in ("csr", "coo"):
        reg = LinearRegression(solver="exact", positive=True).fit(X.asformat(fmt), y)
        np.testing.assert_allclose(reg.coef_, ref.coef_, rtol=NNLS_RTOL, atol=NNLS_RTOL * np.max(ref.coef_))
        np.testing.assert_allclose(reg.predict(X), ref.predict(X.toarray()), rtol=NNLS_RTOL)


def test_positive_on_rank_deficient_data_gives_sklearn_predictions():
    X, y = data("rank_deficient")
    ref = linear_model.LinearRegression(positive=True).fit(X, y)
    reg = LinearRegression(solver="exact", positive=True).fit(X, y)
    # the coefficients of tied columns are not unique; the projection onto the cone, the predictions, is
    np.testing.assert_allclose(reg.predict(X), ref.predict(X), rtol=NNLS_RTOL)
    assert np.all(reg.coef_ >= 0)


@pytest.mark.parametrize("name", realdata.NAMES)
def test_positive_matches_sklearn_on_real_data(name):
    X, Y = (np.asarray(a, dtype=np.float64) for a in realdata.numeric_design(*realdata.load(name)))
    assert_positive_matches(X, Y)


def test_nnls_from_the_accumulator_alone_and_zero_columns():
    X, y = data("random")
    acc = QRAccumulator(X.shape[1]).update(X, y)
    W, b = positive_from_accumulator(acc)
    ref = linear_model.LinearRegression(positive=True).fit(X, y)
    np.testing.assert_allclose(W[0], ref.coef_, rtol=NNLS_RTOL, atol=NNLS_RTOL * np.max(ref.coef_))
    assert nnls(np.zeros((3, 2)), np.ones(3)).tolist() == [0.0, 0.0]
    W2, _ = nonnegative_lstsq(np.c_[X, np.zeros(len(X))], y)
    assert W2[0, -1] == 0.0


def test_positive_with_gradient_descent_projects_and_lbfgs_is_refused():
    X, y = data("random")
    ref = linear_model.LinearRegression(positive=True).fit(X, y)
    reg = LinearRegression(positive=True, optimizer="adam", lr=0.05, epochs=400, tol=None).fit(X, y)
    assert np.all(reg.coef_ >= 0)
    np.testing.assert_allclose(reg.predict(X), ref.predict(X), rtol=1e-3)  # loose: Adam's convergence, 400 epochs
    with pytest.raises(ConfigError, match="positive would have no effect with L-BFGS.*optimizer=adam"):
        LinearRegression(positive=True).fit(X, y)


# --- scipy.sparse -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_formats_fitted_block_by_block(fmt, monkeypatch):
    import torchlinreg.solve.sparse as sparse

    X, y = data("sparse", n=60)
    X = X.asformat(fmt)
    dense = X.toarray()
    blocks = []
    original = sparse.row_blocks

    def spy(*args, **kw):
        for block in original(*args, **kw):
            blocks.append(block[0].shape)
            yield block

    monkeypatch.setattr(sparse, "BLOCK_ENTRIES", 50)  # 10 rows of 5 features a block
    monkeypatch.setattr(torchlinreg.solve, "row_blocks", spy)  # where lstsq looks it up
    sol = torchlinreg.lstsq(X, y)
    assert blocks and max(shape[0] for shape in blocks) == 10  # never the whole matrix densified
    ref = linear_model.LinearRegression().fit(dense, y)
    np.testing.assert_allclose(sol.coef[0], ref.coef_, rtol=EXACT_RTOL, atol=EXACT_RTOL * np.max(np.abs(ref.coef_)))


def test_sparse_nan_gets_the_dense_message():
    X, y = data("sparse")
    X = X.tolil()
    X[3, 1] = np.nan
    with pytest.raises(ValueError) as dense_error:
        LinearRegression().fit(X.toarray(), y)
    with pytest.raises(ValueError) as sparse_error:
        LinearRegression().fit(X.tocsr(), y)
    assert str(sparse_error.value) == str(dense_error.value)
    with pytest.raises(Exception) as dense_lib:
        torchlinreg.lstsq(X.toarray(), y)
    with pytest.raises(Exception) as sparse_lib:
        torchlinreg.lstsq(X.tocsr(), y)
    assert str(sparse_lib.value) == str(dense_lib.value)


def test_positive_gd_estimator_pickles():
    import pickle

    X, y = data("random")
    reg = LinearRegression(positive=True, optimizer="sgd", lr=0.01, epochs=5, tol=None).fit(X, y)
    again = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))
    again.partial_fit(X, y)  # the projection travels with the optimizer
    assert np.all(again.coef_ >= 0)
