"""``LinearRegression``: the library as a scikit-learn estimator.

``fit`` validates the data the scikit-learn way (``validate_data``), then either solves the
least-squares problem exactly (:func:`torchlinreg.solve.lstsq`) or trains the library's
``LinearModel`` with the library's loop (:func:`torchlinreg.training.train`) on standardised
data, and keeps the coefficients in the data's units. Predictions are ``X @ coef_.T +
intercept_`` in NumPy, so a fitted estimator needs no PyTorch device to predict.

scikit-learn is optional: ``import torchlinreg`` never imports it, and importing this module
without it says how to install it.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, replace

import numpy as np

try:
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning, NotFittedError
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn is an optional dependency
    raise ImportError("torchlinreg.LinearRegression needs scikit-learn (1.6 or later); "
                      "install it with: pip install torchlinreg[sklearn]") from exc

import torch

from . import defaults
from .config import TrainConfig
from .data import default_names
from .errors import ConfigError, DataError, RankDeficiencyWarning
from .estimator_inputs import SPARSE, _coef_2d, _device, _load_params, _matmul, _number, _out_dtype, _seed, _weights  # noqa: F401
from .estimator_inputs import issparse, minimum_norm
from .history import History
from .model import build_model
from .report import PrintReport
from .results import Summary, View, text
from .scaling import Standardizer
from .covariances import ResidualPass
from .nnls import nonnegative_lstsq, nonnegative_steps, refuse_positive_with
from .solve import _column_names, lstsq
from .solve.sparse import row_blocks
from .training import make_optimizer, train

SOLVERS = ("gd", "exact")


class LinearRegression(RegressorMixin, BaseEstimator):
    """Least-squares linear regression trained with PyTorch, as a scikit-learn regressor.

    Fits ``y ≈ X @ coef_.T + intercept_`` by minimising the (weighted) mean squared error,
    either by gradient-based training of an ``nn.Linear`` model (``solver="gd"``) or by the
    exact least-squares solution (``solver="exact"``).

    Parameters
    ----------
    solver : {"gd", "exact"}, default="gd"
        ``"gd"`` trains with :func:`torchlinreg.train` and the optimizer below; ``"exact"``
        computes the optimum in float64 with :func:`torchlinreg.lstsq` (QR with iterative
        refinement; the minimum-norm solution when the design is rank-deficient). The
        training parameters below apply to ``"gd"`` only. A scipy.sparse ``X`` is solved exactly.
    fit_intercept : bool, default=True
        False: ``y ≈ X @ coef_.T``, ``intercept_`` 0.0, statsmodels' ``OLS(y, X)``; "gd" trains without bias.
    copy_X : bool, default=True
        scikit-learn's; accepted, with no effect: ``X`` is never written to, so it is never copied for safety.
    n_jobs : int or None, default=None
        scikit-learn's; accepted and unused: the solve's BLAS and PyTorch already use the CPU's cores.
    positive : bool, default=False
        Coefficients ``≥ 0`` (the intercept is free), each target separately. ``"exact"``: non-negative
        least squares from the R factor (:mod:`torchlinreg.nnls`), scikit-learn's answer; ``"gd"``: the
        weights are set to ``max(w, 0)`` after each optimizer step (projected gradient; use SGD or Adam).
    optimizer : {"lbfgs", "sgd", "adam", "adamw"}, default="lbfgs"
        ``"lbfgs"`` takes one line-searched quasi-Newton step per epoch.
    lr : float or None, default=None
        Learning rate; None is the optimizer's default (1.0 for L-BFGS, 0.001 for the others).
    epochs : int, default=200
        Upper bound on the epochs (full passes over the data).
    batch_size : int or None, default=None
        Rows per step; None trains on the full batch (L-BFGS needs it).
    momentum : float, default=0.0
        SGD momentum in [0, 1).
    nesterov : bool, default=False
        SGD Nesterov momentum (needs ``momentum > 0``).
    weight_decay : float, default=0.0
        L2 penalty of the optimizer (SGD, Adam, AdamW) on every parameter it trains, the
        intercept included, on the standardised scale when ``standardize=True``: an optimizer
        setting, not scikit-learn's ``Ridge``. L-BFGS has none and refuses a non-zero value.
    tol : float or None, default=1e-12
        Training stops once the loss has improved by less than ``tol`` (relative) for
        ``patience`` epochs in a row. None trains for exactly ``epochs`` epochs.
    patience : int, default=3
        See ``tol``.
    schedule : {"constant", "step", "cosine"}, default="constant"
        Learning-rate schedule over the epochs of ``fit`` (step: times 0.1 every 30 epochs).
        ``partial_fit`` always steps at ``lr``.
    standardize : bool, default=True
        Train on standardised features and targets (weighted means and standard deviations
        when ``sample_weight`` is given); the fitted attributes and predictions are in the
        data's units either way.
    dtype : {"float64", "float32"} or None, default=None
        Precision of training; None is float64, and then ``coef_``, ``intercept_`` and predictions
        are float32 when ``X`` is float32, as scikit-learn's (an explicit dtype: float64 throughout).
    device : {"cpu", "cuda", "mps", "auto"} or str, default="cpu"
        Where training runs (``"cuda:1"`` and the like are accepted); ``"auto"`` takes CUDA,
        else MPS, else the CPU. MPS has no float64: use ``dtype="float32"`` there.
    random_state : int, numpy.random.RandomState or None, default=None
        Seeds the mini-batch order without touching PyTorch's global random state (training
        starts from zero); None is the tutorial's seed, 59, so that fits repeat exactly.
        A ``RandomState`` gives one seed drawn from it.
    warm_start : bool, default=False
        When True, ``fit`` starts from the previous ``coef_`` and ``intercept_`` (with a
        fresh optimizer) instead of the seeded initial parameters.
    verbose : int, default=0
        Above 0, print the tutorial's report (initial parameters, one line per epoch).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Coefficients; 2-D when ``y`` was 2-D in fit, as ``sklearn.linear_model.LinearRegression``.
    intercept_ : float or ndarray of shape (n_targets,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` in fit was a DataFrame whose column names are all strings.
    n_iter_ : int
        Epochs run by the last ``fit`` (0 for ``solver="exact"``); ``partial_fit`` adds one.
    history_ : list of dict
        One dict per epoch: ``epoch``, ``loss`` (training MSE at the parameters the epoch
        started from), ``lr``, ``params`` (``linear.weight`` of shape (n_targets,
        n_features) and ``linear.bias``, in the data's units) and ``val_loss`` (None).
        Plain data, ready for ``json.dump``. Empty for ``solver="exact"``.
    loss_ : float
        Training loss at ``coef_`` and ``intercept_``: the weighted mean of the squared
        errors over all samples and targets, ``sum(w * r**2) / (sum(w) * n_targets)``.
    optimum_ : LstsqSolution or None
        The exact least-squares solution of the rows given to ``fit`` (float64, refined when
        ill-conditioned), named as the estimator was fitted; what :meth:`summary` compares the
        model with. None after ``partial_fit``, whose rows may be others.
    module_ : LinearModel or None
        The trained PyTorch model (on the standardised scale when ``standardize=True``);
        None for ``solver="exact"``.
    optimizer_ : torch.optim.Optimizer or None
        The optimizer over ``module_``'s parameters that ``partial_fit`` continues with.
    scaler_ : Standardizer or None
        The statistics training was standardised with.

    Notes
    -----
    Why these defaults. The tutorial's settings (SGD, lr 0.001, 50 epochs, raw features,
    float32) stop far short of the optimum on the tutorial's own data and diverge on data
    with larger features: plain gradient descent needs a learning rate below 2 / (largest
    eigenvalue of the loss's Hessian), which depends on the scale of every column, and then
    needs a number of epochs that grows with the Hessian's condition number. No fixed
    learning rate is right for arbitrary data, so the defaults remove the dependence:

    - ``standardize=True`` makes every column mean 0 and variance 1, so the Hessian's
      scale no longer depends on the data's units and its condition number is that of
      the correlation matrix;
    - ``optimizer="lbfgs"`` with its strong-Wolfe line search chooses each step itself
      (``lr=1`` is the line search's first guess, not a step that can diverge) and, on a
      quadratic loss, converges about as fast as conjugate gradients: in a few epochs
      per feature at most on well-conditioned data, to rounding level;
    - ``dtype="float64"`` because float32's rounding (1e-7 relative) limits the
      coefficients to a few correct digits on moderately conditioned data, where
      scikit-learn users expect float64 accuracy;
    - ``tol=1e-12, patience=3`` stop once the loss has improved by less than 1e-12
      (relative) three epochs in a row. The loss's excess over the optimum is quadratic
      in the coefficients' error, so a looser rule stops with only half the digits
      right; 1e-12 is still above float64's rounding of the loss, so a converged run does
      stop (in float32 too: the loss then stops changing). ``epochs=200`` is a bound
      that well-conditioned problems with up to a hundred or so features do not reach;
      when it is reached a ``ConvergenceWarning`` says so.

    Training that diverges (the loss becomes inf or NaN, e.g. SGD with too large a
    ``lr``) stops, keeps the last parameters whose loss was finite, and warns with a
    ``ConvergenceWarning``; ``coef_`` is never NaN.

    On a rank-deficient design (fewer samples than features, duplicated columns)
    both solvers give scikit-learn's minimum-norm solution: ``"gd"`` starts from zero and its
    optimum then loses its component in the design's null space (``estimator_inputs.minimum_norm``).

    Examples
    --------
    >>> import numpy as np
    >>> from torchlinreg.estimator import LinearRegression
    >>> X = np.array([[1.0], [2.0], [3.0], [4.0]])
    >>> y = 2 * X[:, 0] + 1
    >>> reg = LinearRegression().fit(X, y)
    >>> np.round(reg.coef_, 6), round(reg.intercept_, 6)
    (array([2.]), 1.0)
    """

    def __init__(self, *, solver="gd", optimizer="lbfgs", lr=None, epochs=200, batch_size=None, momentum=0.0,
                 nesterov=False, weight_decay=0.0, tol=1e-12, patience=3, schedule="constant", standardize=True,
                 dtype=None, device="cpu", random_state=None, warm_start=False, verbose=0, fit_intercept=True,
                 copy_X=True, n_jobs=None, positive=False):
        self.solver = solver
        self.fit_intercept = fit_intercept
        self.copy_X = copy_X
        self.n_jobs = n_jobs
        self.positive = positive
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.tol = tol
        self.patience = patience
        self.schedule = schedule
        self.standardize = standardize
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    @classmethod
    def from_saved_model(cls, saved) -> LinearRegression:
        """A fitted estimator that predicts what ``saved`` (a :class:`~torchlinreg.persistence.SavedModel`,
        from ``tl.load_model``) predicts.

        ``coef_`` and ``intercept_`` are the saved ones (1-D and a float for one target, unless the model
        was saved from an estimator fitted on a 2-D y); ``feature_names_in_`` holds the feature names
        unless the model was saved from an estimator fitted without them; the parameters come from the
        metadata (a saved estimator's ``params``, or a fit's ``settings``). ``fit`` and ``partial_fit``
        work as on any estimator (``partial_fit`` and ``warm_start`` continue from these
        coefficients); ``summary()`` needs a ``fit`` first, since the rows are not saved.
        """
        from .restore import fitted_from_saved

        return fitted_from_saved(cls, saved)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # 2-D y: one row of coef_ per target
        tags.input_tags.sparse = True  # scipy.sparse X: solved exactly, block by block (solve.sparse)
        return tags

    # --- fitting ------------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; the loss becomes the weighted mean of the squared errors.

        Returns
        -------
        self : LinearRegression
        """
        previous = _coef_2d(self) if self.warm_start and hasattr(self, "coef_") else None
        targets = _column_names(y)  # a Series' or DataFrame's names, for summary()
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32],
                             accept_sparse=SPARSE)  # copies nothing: X is never written to (copy_X)
        w = _weights(sample_weight, X)
        Y = y.reshape(len(y), -1)  # (n, n_targets)
        config = self._config()
        self._out_dtype_ = _out_dtype(self.dtype, X)
        if self.solver == "exact" or issparse(X) or (self.positive and self.solver != "gd"):
            sol = self._set_optimum(X, Y, w, targets, quiet=False)
            self.module_ = self.optimizer_ = self.scaler_ = None
            self.n_iter_, self.history_ = 0, []
            W, b = (sol.coef, sol.intercept) if not self.positive else \
                nonnegative_lstsq(X, Y, sample_weight=w, fit_intercept=bool(self.fit_intercept))
            self._set_coef(W, b, y.ndim, X, Y, w)
            return self

        if previous is not None and previous[0].shape != (Y.shape[1], X.shape[1]):
            raise ValueError(f"warm_start=True continues from coef_ of shape {previous[0].shape} (n_targets, "
                             f"n_features), but X and y have {X.shape[1]} features and {Y.shape[1]} targets; "
                             f"set warm_start=False to start afresh")
        self._init_module(X, Y, w, config, start=previous)
        history = self._train(X, Y, w, config)
        self.n_iter_ = len(history)
        self.history_ = [asdict(r) for r in history.records]
        self._set_optimum(X, Y, w, targets, quiet=True)
        self._finish(history, config, y.ndim, X, Y, w, partial=False)
        return self

    def partial_fit(self, X, y, sample_weight=None):
        """One more epoch of training on ``X`` and ``y``, keeping the model and optimizer state.

        The first call (on an unfitted estimator) sets ``n_features_in_``, the
        standardisation statistics and the seeded initial parameters; after ``fit`` the
        training continues from the fitted model. Every call steps at the constant rate
        ``lr``; ``tol`` and ``schedule`` apply to ``fit`` only.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : LinearRegression
        """
        first = not hasattr(self, "coef_")
        X, y = validate_data(self, X, y, reset=first, multi_output=True, y_numeric=True,
                             dtype=[np.float64, np.float32])  # dense only: a sparse X is fitted exactly, by fit
        w = _weights(sample_weight, X)
        self._out_dtype_ = _out_dtype(self.dtype, X) if first else getattr(self, "_out_dtype_", np.float64)
        Y = y.reshape(len(y), -1)
        if not first and _coef_2d(self)[0].shape[0] != Y.shape[1]:
            raise ValueError(f"y has {Y.shape[1]} targets but the model was fitted with "
                             f"{_coef_2d(self)[0].shape[0]}; partial_fit needs the same targets in every call")
        n_done = 0 if first else self.n_iter_
        config = replace(self._config(), epochs=1, tol=None, schedule="constant")
        config = replace(config, seed=(config.seed + n_done) % 2**63)  # a new mini-batch order each call
        if getattr(self, "module_", None) is None:  # first call, or after solver="exact"
            self._init_module(X, Y, w, config, start=None if first else _coef_2d(self))
        for group in self.optimizer_.param_groups:
            group["lr"] = config.learning_rate  # fit's schedule may have left another rate
        history = self._train(X, Y, w, config)
        self.n_iter_ = n_done + 1
        records = [asdict(r) | {"epoch": self.n_iter_} for r in history.records]
        self.history_ = ([] if first else list(self.history_)) + records
        self.optimum_ = None
        self._finish(history, config, y.ndim, X, Y, w, partial=True)  # summary() compares with the optimum of fit's rows; these may be others
        return self

    def predict(self, X):
        """Predictions ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets), as ``y`` in fit
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], accept_sparse=SPARSE)
        return np.asarray(X @ self.coef_.T) + self.intercept_

    def summary(self, *, conf_level: float = 0.95) -> Summary:
        """The fitted model beside the exact least-squares optimum of the training rows, then the optimum's
        statistics in statsmodels' layout, with the names the estimator was fitted on.

        Per target each coefficient by feature name (``feature_names_in_``, else ``x1, x2, ...``), the
        intercept and the loss, as "trained", "optimum", "difference"; the gap between them; then
        standard errors, t and p values, ``conf_level`` confidence intervals, R² (the optimum's), F,
        AIC and BIC (:func:`torchlinreg.regression_statistics`, classical covariance).

        Returns
        -------
        Summary : a str (printed, or shown in a notebook, as it reads)
        """
        check_is_fitted(self)
        solution = getattr(self, "optimum_", None)
        if solution is None:
            raise NotFittedError("summary() compares the model with the exact optimum of the rows given to fit; "
                                 "after partial_fit (other rows), or for a loaded model, there is none: call fit "
                                 "first")
        from .judge import gap
        from .statistics import solution_statistics

        W, b = _coef_2d(self)
        sums = self._fit_sums_.get("pass", [self._fit_sums_["log_weights"], solution.n_samples])  # fit kept Σ log w, constant sums
        residuals = ResidualPass(solution).add_vector(sums) if solution.sum_weights is not None or "pass" in self._fit_sums_ else None
        statistics = solution_statistics(solution, residuals, conf_level=conf_level)
        how = (f"solver='exact'" if self.solver == "exact" else
               f"optimizer={self.optimizer!r}, {self.n_iter_} epochs")
        return text(View(solution.feature_names, solution.target_names, {"weight": W, "bias": b, "loss": self.loss_},
                         {"weight": solution.coef, "bias": solution.intercept, "loss": solution.loss},
                         gap(W, b, self.loss_, solution, self._fit_sums_["mean_square_y"]), None, statistics,
                         f"{type(self).__name__}({how}) on {solution.n_samples:,} rows", bool(self.fit_intercept)))

    # --- the steps ------------------------------------------------------------------------------

    def _config(self) -> TrainConfig:
        """The training settings, checked; messages name this class's parameters."""
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}, got {self.solver!r}")
        for name in ("standardize", "warm_start", "fit_intercept", "copy_X", "positive"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        # weight decay with L-BFGS: TrainConfig refuses it, with the one message of config.no_effect
        if self.positive and self.solver == "gd":
            refuse_positive_with(self.optimizer, False)  # the message the command gives, in keywords
        return TrainConfig(  # its messages name the settings as keywords: this estimator's parameters
            epochs=_number(self.epochs), lr=_number(self.lr), optimizer=self.optimizer,
            momentum=_number(self.momentum), nesterov=bool(self.nesterov), weight_decay=_number(self.weight_decay),
            batch_size=_number(self.batch_size), tol=_number(self.tol), patience=_number(self.patience),
            schedule=self.schedule, dtype=self.dtype or "float64", seed=_seed(self.random_state))

    def _init_module(self, X, Y, w, config: TrainConfig, *, start) -> None:
        """``scaler_``, ``module_`` (seeded, or from ``start`` = (coef, intercept) in data units) and ``optimizer_``."""
        device = _device(self.device, config.dtype)
        intercept = bool(self.fit_intercept)  # without: no bias, columns scaled not centred (Standardizer.fit)
        self.scaler_ = Standardizer.fit(X, Y, sample_weight=w, center=intercept) if self.standardize else None
        module = build_model(X.shape[1], Y.shape[1], seed=config.seed, fit_intercept=intercept)
        module.to(device=device, dtype=getattr(torch, config.dtype))  # before loading: float32 would round ``start``
        m, d = Y.shape[1], X.shape[1]  # from zero (scikit-learn's minimum norm), unless continuing from ``start``
        if start is not None:
            _load_params(module, *start, self.scaler_)
        else:
            _load_params(module, np.zeros((m, d)), np.zeros(m), None)  # zero on the scale trained on
        self.module_ = module
        self.optimizer_ = make_optimizer(self.module_, config)

    def _train(self, X, Y, w, config: TrainConfig) -> History:
        """``training.train`` on the module's device; the history is in the data's units."""
        p = next(self.module_.parameters())
        if self.scaler_ is not None:  # train() takes standardised data and the scaler to report in data units
            X, Y = self.scaler_.transform_X(np.asarray(X, dtype=np.float64)), self.scaler_.transform_y(Y)
        X_t, Y_t = (torch.tensor(a, dtype=p.dtype, device=p.device) for a in (X, Y))
        w_t = None if w is None else torch.tensor(w, dtype=p.dtype, device=p.device)
        callbacks = [PrintReport()] if self.verbose else []
        with nonnegative_steps(self.module_.linear.weight) if self.positive else contextlib.nullcontext():
            return train(self.module_, X_t, Y_t, config, callbacks, scaler=self.scaler_, sample_weight=w_t,
                         optimizer=self.optimizer_)  # continues with the optimizer's state: partial_fit needs it

    def _finish(self, history: History, config: TrainConfig, y_ndim: int, X, Y, w, *, partial: bool) -> None:
        """Coefficients from the history, and the warnings scikit-learn users look for."""
        m, d = Y.shape[1], X.shape[1]
        W = np.asarray(history.final_params["linear.weight"], dtype=np.float64).reshape(m, d)
        b = np.asarray(history.final_params["linear.bias"], dtype=np.float64).reshape(m)
        rank = None if getattr(self, "optimum_", None) is None else self.optimum_.rank - bool(self.fit_intercept)
        if not self.positive and rank is not None and rank < d:  # scikit-learn's optimum: the least norm
            W, b = minimum_norm(W, b, X, w, rank, bool(self.fit_intercept))
        self._set_coef(W, b, y_ndim, X, Y, w)
        if history.diverged:
            self.optimizer_ = make_optimizer(self.module_, config)  # its state holds the inf/NaN steps
            warnings.warn(f"training diverged: {history.message}. Lower lr, or use optimizer='lbfgs' with "
                          f"standardize=True (the defaults)", ConvergenceWarning, stacklevel=3)
        elif not partial and config.tol is not None and history.status != "converged":
            warnings.warn(f"the loss still improved by {config.tol:g} (relative) or more within the last "
                          f"{config.patience} of {config.epochs} epochs; raise epochs, raise tol, or use "
                          f"optimizer='lbfgs' with standardize=True", ConvergenceWarning, stacklevel=3)

    def _set_coef(self, W, b, y_ndim: int, X, Y, w) -> None:
        """``coef_``, ``intercept_`` (shaped as scikit-learn's for 1-D or 2-D y) and ``loss_``."""
        W, b = np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)
        out = getattr(self, "_out_dtype_", np.float64)  # float32 data (and dtype=None): float32, as scikit-learn
        self.coef_ = (W[0].copy() if y_ndim == 1 else W).astype(out, copy=False)
        self.intercept_ = (float(b[0]) if out == np.float64 else out(b[0])) if y_ndim == 1 else b.astype(out)
        r2 = (_matmul(X, W.T) + b - Y) ** 2  # (n, n_targets)
        self.loss_ = float(np.mean(r2) if w is None else (w @ r2).sum() / (w.sum() * r2.shape[1]))

    def _set_optimum(self, X, Y, w, targets, *, quiet: bool):
        """``optimum_``: the exact least-squares solution of the training rows, named (for ``summary()``), and
        the sums its statistics need beyond it. ``quiet`` (gradient descent, which did not ask for it): no
        RankDeficiencyWarning, and no optimum where float64 cannot hold it."""
        names = getattr(self, "feature_names_in_", None)
        features = tuple(map(str, names)) if names is not None and len(set(names)) == len(names) else \
            default_names("x", X.shape[1])
        targets = targets if targets is not None and len(targets) == Y.shape[1] else default_names("y", Y.shape[1])
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore", RankDeficiencyWarning)
            try:
                self.optimum_ = lstsq(X, Y, sample_weight=w, feature_names=features, target_names=targets,
                                      fit_intercept=bool(self.fit_intercept))
            except DataError:
                if not quiet:
                    raise
                self.optimum_ = None
        Y64 = np.asarray(Y, dtype=np.float64)
        self._fit_sums_ = {"mean_square_y": float(np.mean(Y64 ** 2)),  # tells an exact fit from rounding (judge.gap)
                           "log_weights": 0.0 if w is None else float(np.sum(np.log(w[w > 0])))}
        if not self.fit_intercept and self.optimum_ is not None:  # the sums that find a constant among the columns
            sums = ResidualPass(self.optimum_)
            for block in row_blocks(X, Y, w):
                sums.update(*block)
            self._fit_sums_["pass"] = sums.to_vector()
        return self.optimum_


# --- from a saved model ----------------------------------------------------------------------------

def load_estimator(path) -> LinearRegression:
    """The model saved at ``path`` (``tl.save_model``, or ``torchlinreg fit --save``) as a fitted
    :class:`LinearRegression`: ``LinearRegression.from_saved_model(tl.load_model(path))``."""
    from .persistence import load_model

    return LinearRegression.from_saved_model(load_model(path))
