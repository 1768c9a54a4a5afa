"""Date and time columns as numbers: what the pipeline's `dates` step computes.

A column of dates (a datetime dtype, or strings in ISO 8601 form such as ``2024-03-01``
or ``2024-03-01 17:30:00``) becomes, per column, the parts a model can split or weigh:
year, month, day of month, day of week, day of year, hour, and the days since
1970-01-01 (the trend). A value that is missing or does not parse is NaN in every part;
the imputer after this step fills it and flags it.

The functions here go into the fitted pipeline inside a scikit-learn
``FunctionTransformer``. The logged model carries them by value (see
`tracking.Tracker.log_model`), so it still loads where only scikit-learn and pandas are
installed. Keep this module free of imports from the rest of the package.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

PARTS = ("year", "month", "day", "day_of_week", "day_of_year", "hour", "days")

# year first, so never ambiguous between day-month and month-day orders
ISO_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?"
)


def looks_like_dates(values: pd.Series) -> bool:
    """Whether every non-missing value is a string in ISO 8601 date form (at least one)."""
    present = values.dropna()
    if present.empty or not isinstance(first := present.iloc[0], str):
        return False
    if not ISO_DATE.fullmatch(first):  # most string columns: decided by their first value
        return False
    if not all(isinstance(v, str) for v in present):
        return False
    return bool(present.str.fullmatch(ISO_DATE).all())


def date_parts(X: Any) -> np.ndarray:
    """(rows, len(PARTS) x columns) floats; NaN where a value is missing or unparsable."""
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
    blocks = []
    for _, column in frame.items():
        if pd.api.types.is_datetime64_any_dtype(column):
            t = pd.to_datetime(column, utc=True)
        else:
            t = pd.to_datetime(column, errors="coerce", utc=True, format="ISO8601")
        since = (t - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)
        parts = [getattr(t.dt, part) for part in PARTS[:-1]] + [since]
        blocks.append(np.column_stack([p.to_numpy(dtype=float, na_value=np.nan) for p in parts]))
    if not blocks:
        return np.empty((len(frame), 0))
    return np.hstack(blocks)


def part_names(transformer: Any, columns: Any) -> np.ndarray:
    """The output names of `date_parts` for the input columns: f"{column}_{part}"."""
    return np.asarray([f"{c}_{p}" for c in columns for p in PARTS], dtype=object)
