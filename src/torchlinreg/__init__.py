"""torchlinreg: linear regression with PyTorch, from the tutorial to real data.

Names are loaded on first use, so ``import torchlinreg`` (and ``torchlinreg --help``)
does not load PyTorch.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Dataset": "data",
    "tutorial_data": "data",
    "make_regression": "data",
    "read_dataset": "formats",
    "write_table": "formats",
    "lstsq": "solve",
    "solve_dataset": "solve",
    "LstsqSolution": "solve",
    "QRAccumulator": "solve",
    "GramObjective": "gram",
    "train_gram": "gram",
    "select_engine": "gram",
    "diagnose": "diagnostics",
    "regression_metrics": "metrics",
    "Standardizer": "scaling",
    "LinearRegression": "estimator",
    "load_estimator": "estimator",
    "Ridge": "ridge_estimator",
    "RidgeCV": "ridge_estimator",
    "ridge": "ridge_solve",
    "ridge_cv": "ridge_solve",
    "ridge_source": "ridge_solve",
    "RidgeSolution": "ridge_solve",
    "regression_statistics": "statistics",
    "RegressionStatistics": "statistics",
    "ols": "ols_results",
    "OLSResults": "ols_results",
    "write_row_figures": "rowfigures",
    "write_report": "html_report",
    "save_animation": "animation",
    "SavedModel": "persistence",
    "save_model": "persistence",
    "load_model": "persistence",
    "LinearModel": "model",
    "build_model": "model",
    "TrainConfig": "config",
    "train": "training",
    "History": "history",
    "EpochRecord": "history",
    "Callback": "callbacks",
    "PrintReport": "report",
    "max_stable_lr": "diagnostics",
    "run_fit": "fitting",
    "fit": "fit_call",
    "open_source": "sources",
    "solve_source": "exact",
    "ArraySource": "sources",
    "FileSource": "sources",
    "Source": "sources",
    "FitResult": "fitting",
    "load_result": "runs",
    "LoadedResult": "runs",
    "save_plots": "pictures",
    "plot_data": "figures",
    "plot_loss": "figures",
    "plot_model": "figures",
    "plot_residuals": "figures",
    "plot_qq": "figures",
    "plot_predicted": "figures",
    "plot_residuals_vs_features": "figures",
    "TorchlinregError": "errors",
    "ConfigError": "errors",
    "OutputError": "errors",
    "DataError": "errors",
    "ModelFileError": "errors",
    "ResultFileError": "errors",
    "RankDeficiencyWarning": "errors",
    "ConvergenceWarning": "errors",
    "SettingsWarning": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'torchlinreg' has no attribute {name!r}")


def __dir__():
    return __all__
