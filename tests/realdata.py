"""Eight real data sets, as the packages that ship them give them: statsmodels' longley, stackloss,
ccard, grunfeld, fair and statecrime, scikit-learn's diabetes and linnerud.

Each comes as a pandas DataFrame and the name(s) of its target column(s), the dependent
variable statsmodels (or scikit-learn) names for it. Nothing here is downloaded: both packages
carry these files.
"""

from __future__ import annotations

import pandas as pd

STATSMODELS = ("longley", "stackloss", "ccard", "grunfeld", "fair", "statecrime")
SKLEARN = ("diabetes", "linnerud")
NAMES = STATSMODELS + SKLEARN


def load(name: str) -> tuple[pd.DataFrame, list[str]]:
    """The data set ``name`` as a DataFrame (text columns kept, as in the package) and its target column(s)."""
    if name in STATSMODELS:
        import statsmodels.api as sm

        loaded = getattr(sm.datasets, name).load_pandas()
        return loaded.data.reset_index(drop=True), [loaded.endog_name]
    from sklearn import datasets

    if name == "diabetes":
        frame = datasets.load_diabetes(as_frame=True).frame
        return frame, ["target"]
    loaded = datasets.load_linnerud(as_frame=True)  # three targets: Weight, Waist, Pulse
    return pd.concat([loaded.data, loaded.target], axis=1), list(loaded.target.columns)


def numeric_design(frame: pd.DataFrame, targets: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The features torchlinreg uses by default (every other numeric column) and the targets."""
    features = [c for c in frame.columns if c not in targets and pd.api.types.is_numeric_dtype(frame[c])]
    return frame[features].astype(float), frame[targets].astype(float)
