"""The data as loaded, and the checks it must pass before anything starts: shapes, the
target against the task, the columns' types (numeric, categorical, dates).

Everything here runs on the driver, before Ray starts, so bad data fails in a second
with one line instead of after the cluster is up.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..config.schema import AutoMLConfig
from ..dates import looks_like_dates
from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    """What get_data() returns, normalised: X as numpy, sparse or DataFrame; y 1-D numpy."""

    name: str
    X: Any
    y: np.ndarray
    X_valid: Any = None
    y_valid: np.ndarray | None = None
    sample_weight: np.ndarray | None = None
    # rows the search never sees, to score the best model on (test_size, X_test, test_path)
    X_test: Any = None
    y_test: np.ndarray | None = None
    # columns the pipeline one-hot encodes (DataFrame input only)
    categorical: list[str] = field(default_factory=list)
    # columns the pipeline imputes and scales (DataFrame input only)
    numeric: list[str] = field(default_factory=list)
    # columns of dates the pipeline turns into numbers (DataFrame input only; dates.py)
    dates: list[str] = field(default_factory=list)
    _missing_in_X: int | None = field(default=None, repr=False)

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def nbytes(self) -> int:
        """Memory of X and X_valid (a DataFrame's object columns: their pointers only)."""
        return sum(_nbytes(part) for part in (self.X, self.X_valid) if part is not None)

    @property
    def is_sparse(self) -> bool:
        return sparse.issparse(self.X)

    def missing_in_X(self) -> int:
        """Missing values in X (sparse input: none; its zeros are data), counted once: the
        driver later swaps X for the object-store copy of the same values."""
        if self._missing_in_X is None:
            self._missing_in_X = 0 if self.is_sparse else missing_values(self.X)
        return self._missing_in_X

    def has_missing(self) -> bool:
        """Whether X or X_valid has a missing value."""
        valid = self.X_valid
        return self.missing_in_X() > 0 or (
            valid is not None and not sparse.issparse(valid) and missing_values(valid) > 0
        )

    def summary(self, task: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "rows": self.n_rows,
            "features": self.n_features,
            "input": "sparse" if self.is_sparse else type(self.X).__name__,
            "categorical_columns": len(self.categorical),
            "date_columns": len(self.dates),
            "validation_rows": 0 if self.X_valid is None else int(self.X_valid.shape[0]),
            "test_rows": 0 if self.X_test is None else int(self.X_test.shape[0]),
            "sample_weight": self.sample_weight is not None,
        }
        if not self.is_sparse:
            out["missing_values"] = self.missing_in_X()
        if task == "classification":
            classes, counts = np.unique(self.y, return_counts=True)
            out["classes"] = len(classes)
            out["class_counts"] = {str(c): int(n) for c, n in zip(classes, counts, strict=True)}
        else:
            out["target_min"], out["target_max"] = float(self.y.min()), float(self.y.max())
        return out


def _nbytes(X: Any) -> int:
    if isinstance(X, pd.DataFrame):
        return int(X.memory_usage(index=False, deep=False).sum())
    if sparse.issparse(X):
        return sum(int(a.nbytes) for a in vars(X).values() if isinstance(a, np.ndarray))
    return int(getattr(X, "nbytes", 0))


def missing_values(X: Any, chunk_rows: int = 65536) -> int:
    """Missing values in a DataFrame or dense array, counted a block of rows at a time
    (a mask of the whole array would be another eighth of its size)."""
    if isinstance(X, pd.DataFrame):
        return int(X.isna().sum().sum())
    X = np.asarray(X)
    if X.dtype.kind not in "fc":
        return 0
    return sum(
        int(np.count_nonzero(np.isnan(X[i : i + chunk_rows])))
        for i in range(0, X.shape[0], chunk_rows)
    )


def check(ds: Dataset, automl: AutoMLConfig, source: str) -> None:
    task = automl.task
    pairs = [("X", ds.X, "y", ds.y)]
    for xk, X, yk, y in (
        ("X_valid", ds.X_valid, "y_valid", ds.y_valid),
        ("X_test", ds.X_test, "y_test", ds.y_test),
    ):
        if X is not None or y is not None:
            if X is None or y is None:
                raise DataError(source, f"{xk} and {yk} must be given together")
            pairs.append((xk, X, yk, y))
    for xk, X, yk, y in pairs:
        if X.shape[0] != len(y):
            raise DataError(
                source, f"{xk} has {X.shape[0]} rows but {yk} has {len(y)}; they must match"
            )
    if ds.sample_weight is not None and len(ds.sample_weight) != len(ds.y):
        raise DataError(
            source, f"sample_weight has {len(ds.sample_weight)} values for {len(ds.y)} rows"
        )
    for key, other in (("X_valid", ds.X_valid), ("X_test", ds.X_test)):
        if other is not None and other.shape[1] != ds.X.shape[1]:
            raise DataError(source, f"{key} has {other.shape[1]} columns, X has {ds.X.shape[1]}")
        if isinstance(other, pd.DataFrame) and isinstance(ds.X, pd.DataFrame):
            absent = [c for c in ds.X.columns if c not in other.columns]
            if absent:
                raise DataError(source, f"{key} has no column {absent[0]!r}, which X has")
    if ds.n_rows < 2:
        raise DataError(source, f"has {ds.n_rows} rows; need at least 2")
    missing_y = pd.isna(ds.y)
    if missing_y.any():
        raise DataError(
            source, f"y has {int(missing_y.sum())} missing values; drop those rows or fill them"
        )
    _type_columns(ds, automl, source)
    for key, X in (("X", ds.X), ("X_valid", ds.X_valid), ("X_test", ds.X_test)):
        if X is not None:
            _refuse_infinite(X, key, source)
    _warn_empty_columns(ds.X, source)
    if task == "regression":
        try:
            ds.y = ds.y.astype(float)
            if ds.y_valid is not None:
                ds.y_valid = ds.y_valid.astype(float)
            if ds.y_test is not None:
                ds.y_test = ds.y_test.astype(float)
        except (TypeError, ValueError):
            raise ConfigError(
                "automl.task",
                task,
                f"{source}: the target has non-numeric values; use automl=classification",
            ) from None
        return
    if ds.y.dtype.kind == "f" and not np.all(np.mod(ds.y, 1) == 0):
        raise ConfigError(
            "automl.task",
            task,
            f"{source}: the target is continuous ({len(np.unique(ds.y))} distinct values); use automl=regression",
        )
    classes, counts = np.unique(ds.y, return_counts=True)
    if len(classes) < 2:
        raise DataError(
            source, f"y has a single class ({label(classes[0])}); classification needs two or more"
        )
    folds = automl.n_cross_validations
    if ds.X_valid is None and folds is not None and counts.max() < folds:
        # stratified k-fold needs one class with k rows at least
        raise DataError(source, _too_few_for_folds(classes, counts, folds))
    if ds.X_valid is None and folds is not None and counts.min() < folds:
        # stratified folds still work: some validate without those classes, and a model
        # whose training rows lack one gives it probability 0 there (worker._fold)
        rare = ", ".join(
            f"{label(c)} ({n})" for c, n in zip(classes, counts, strict=True) if n < folds
        )
        log.warning(
            "%s: class(es) with fewer rows than the %d folds: %s; not every fold holds them",
            source,
            folds,
            rare,
        )
    if ds.X_valid is None and folds is None and counts.min() < 2:
        rare = classes[np.argmin(counts)]
        raise DataError(
            source,
            f"class {label(rare)} has a single row; a stratified holdout needs two per class",
        )


def hold_out_test(ds: Dataset, share: float, seed: int, classification: bool) -> Dataset:
    """`ds` with `share` of its rows moved to its test set (automl.test_size): seeded, and
    stratified for classification when every class has two rows to split."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(ds.n_rows)
    stratify = None
    if classification:
        _, counts = np.unique(ds.y.astype(str), return_counts=True)
        stratify = ds.y.astype(str) if counts.min() >= 2 else None
    try:
        train, test = train_test_split(rows, test_size=share, random_state=seed, stratify=stratify)
    except ValueError as ex:  # too few rows for the share
        raise ConfigError("automl.test_size", share, f"cannot hold out a test set: {ex}") from ex
    train, test = np.sort(train), np.sort(test)
    weight = None if ds.sample_weight is None else ds.sample_weight[train]
    return dataclasses.replace(
        ds,
        X=_rows(ds.X, train),
        y=ds.y[train],
        sample_weight=weight,
        X_test=_rows(ds.X, test),
        y_test=ds.y[test],
    )


def _rows(X: Any, idx: np.ndarray) -> Any:
    if isinstance(X, pd.DataFrame):
        return X.iloc[idx].reset_index(drop=True)
    return X[idx]


def _warn_empty_columns(X: Any, source: str) -> None:
    """One warning naming the columns of X with no value at all: they carry nothing (the
    pipeline's imputer drops them), and numpy would otherwise say so in its own words
    ("All-NaN slice encountered") where they are summarised."""
    if sparse.issparse(X):
        return
    if isinstance(X, pd.DataFrame):
        empty = [str(c) for c in X.columns if X[c].isna().all()]
    else:
        A = np.asarray(X)
        empty = [f"x{j}" for j in np.flatnonzero(_all_nan(A))] if A.dtype.kind in "fc" else []
    if empty:
        shown = ", ".join(map(repr, empty[:5])) + (" ..." if len(empty) > 5 else "")
        log.warning(
            "%s: column(s) with no value (all missing): %s; they carry no information, drop them",
            source,
            shown,
        )


def _all_nan(A: np.ndarray, chunk_rows: int = 65536) -> np.ndarray:
    """Per column of a float array, whether every value is NaN (a block of rows at a time)."""
    out = np.ones(A.shape[1], dtype=bool)
    for i in range(0, A.shape[0], chunk_rows):
        out &= np.isnan(A[i : i + chunk_rows]).all(axis=0)
    return out


def _too_few_for_folds(classes: np.ndarray, counts: np.ndarray, folds: int) -> str:
    """What to change when no class has as many rows as there are folds."""
    order = np.argsort(counts, kind="stable")
    shown = ", ".join(f"{label(classes[i])} ({int(counts[i])})" for i in order[:5])
    more = f" and {len(classes) - 5} more" if len(classes) > 5 else ""
    most = int(counts.max())
    fewer = f"set automl.n_cross_validations={most} or fewer, " if most >= 2 else ""
    return (
        f"no class has {folds} rows for automl.n_cross_validations={folds}; rows per class: "
        f"{shown}{more}; {fewer}hold out rows instead (automl.n_cross_validations=null "
        "automl.validation_size=0.2, two rows per class), or drop the classes with few rows"
    )


def _refuse_infinite(X: Any, key: str, source: str, chunk_rows: int = 65536) -> None:
    """One line naming the first column with +-inf: no estimator takes it, and every
    iteration would fail on it (NaN is missing, and imputed). Counted a block of rows at
    a time, as missing_values does."""
    if sparse.issparse(X):
        if X.data.dtype.kind == "f" and np.isinf(X.data).any():
            raise DataError(source, f"{key} holds infinite values; replace them with NaN")
        return
    # (name, values): a DataFrame's float columns one by one (views, not a copy of X)
    if isinstance(X, pd.DataFrame):
        parts = [(str(c), X[c].to_numpy()) for c in X.columns if X[c].dtype.kind == "f"]
    else:
        A = np.asarray(X)
        parts = [("", A)] if A.dtype.kind == "f" else []
    for name, values in parts:
        infinite = np.zeros(values.shape[1:], dtype=np.int64)
        for i in range(0, values.shape[0], chunk_rows):
            infinite += np.isinf(values[i : i + chunk_rows]).sum(axis=0)
        if infinite.any():
            j = int(np.flatnonzero(infinite)[0]) if infinite.ndim else 0
            column = name or f"x{j}"
            raise DataError(
                source,
                f"{key} column {column!r} has {int(infinite.flat[j])} infinite value(s); "
                "replace them with NaN (imputed) or drop the column",
            )


def label(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _type_columns(ds: Dataset, automl: AutoMLConfig, source: str) -> None:
    """Split DataFrame columns into numeric and categorical, and normalise their dtypes."""
    if not isinstance(ds.X, pd.DataFrame):
        if not ds.is_sparse and not np.issubdtype(np.asarray(ds.X).dtype, np.number):
            raise DataError(source, "X is not numeric; give a DataFrame for string columns")
        return
    frames = [ds.X] + [f for f in (ds.X_valid, ds.X_test) if isinstance(f, pd.DataFrame)]
    numeric, categorical, dates = [], [], []
    for col in ds.X.columns:
        s = ds.X[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            numeric.append(col)
        elif pd.api.types.is_datetime64_any_dtype(s):
            dates.append(col)
        elif pd.api.types.is_timedelta64_dtype(s):
            raise DataError(
                source,
                f"column {col!r} holds time spans; turn them into numbers (e.g. seconds) or drop the column",
            )
        elif looks_like_dates(s):
            dates.append(col)
        else:
            categorical.append(col)
    for frame in frames:
        for col in numeric:
            frame[col] = frame[col].astype(float)
        for col in categorical:
            # one dtype for every category value, every missing value NaN: mixed ints and
            # strings in a column would otherwise break the encoder's sorting, and pandas'
            # pd.NA (nullable string dtypes, Parquet) the imputer's missing-value test
            as_objects = frame[col].astype(object)  # map() on a string dtype keeps pd.NA
            frame[col] = as_objects.map(lambda v: np.nan if pd.isna(v) else str(v)).astype(object)
        for col in dates:
            if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
                # in UTC, without the zone: MLflow's model signature takes naive times only
                frame[col] = frame[col].dt.tz_convert("UTC").dt.tz_localize(None)
            elif not pd.api.types.is_datetime64_any_dtype(frame[col]):
                frame[col] = frame[col].astype(object).where(frame[col].notna(), np.nan)
    if (categorical or dates) and not automl.preprocess:
        named = categorical + dates
        shown = ", ".join(map(str, named[:5])) + (" ..." if len(named) > 5 else "")
        raise ConfigError(
            "automl.preprocess",
            False,
            f"{source} has string, categorical or date columns ({shown}); set automl.preprocess=true",
        )
    if dates:
        log.info(
            "date columns, turned into year, month, day, ... and days since 1970: %s",
            ", ".join(map(str, dates)),
        )
    ds.numeric, ds.categorical, ds.dates = numeric, categorical, dates
