"""Load the data named by the ``data`` group, check it, and prepare it for the workers.

Everything here runs on the driver, before Ray starts, so a bad script or file fails
in a second with one line instead of after the cluster is up.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from scipy import sparse

from .dates import looks_like_dates
from .errors import ConfigError, DataError

log = logging.getLogger(__name__)

SCRIPT_KEYS = ("X", "y", "X_valid", "y_valid", "sample_weight")


@dataclass
class Dataset:
    """What get_data() returns, normalised: X as numpy, sparse or DataFrame; y 1-D numpy."""

    name: str
    X: Any
    y: np.ndarray
    X_valid: Any = None
    y_valid: np.ndarray | None = None
    sample_weight: np.ndarray | None = None
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


def load(data: DictConfig, automl: DictConfig) -> Dataset:
    """Load and check the data for this experiment; raise DataError/ConfigError on bad input."""
    if data.kind == "builtin":
        ds = _load_builtin(data.name)
    elif data.kind == "script":
        ds = _load_script(Path(data.path).expanduser(), data.name)
    else:
        ds = _load_file(data)
    _check(ds, automl, source=_source(data))
    return ds


def experiment_name(data: DictConfig) -> str:
    if data.kind == "builtin":
        return data.name
    if data.name:
        return str(data.name)
    path = Path(data.path)
    return path.parent.name if path.stem == "get_data" and path.parent.name else path.stem


def _source(data: DictConfig) -> str:
    return f"data={data.name}" if data.kind == "builtin" else f"data.path={data.path}"


def _load_builtin(name: str) -> Dataset:
    from sklearn import datasets

    if name == "digits":
        # exactly the seed's get_data(): rows 10 onward, as numpy arrays
        digits = datasets.load_digits()
        return Dataset(name, digits.data[10:, :], digits.target[10:])
    loader = getattr(datasets, f"load_{name}")
    bunch = loader(as_frame=True)
    return Dataset(name, bunch.data, bunch.target.to_numpy())


def _load_script(path: Path, name: str | None) -> Dataset:
    where = f"data.path={path}"
    module_name = f"_automl_get_data_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DataError(where, "cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    # let the script import modules that sit next to it
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
        get_data = getattr(module, "get_data", None)
        if not callable(get_data):
            raise DataError(where, "defines no get_data() function")
        returned = get_data()
    except DataError:
        raise
    except Exception as ex:  # the user's code: report its own error line
        raise DataError(where, f"get_data() raised {_last_line(ex)}") from ex
    finally:
        sys.path.remove(str(path.parent.resolve()))
    if not isinstance(returned, dict):
        raise DataError(
            where,
            f"get_data() returned {type(returned).__name__}; expected a dict with keys X and y",
        )
    missing = [k for k in ("X", "y") if returned.get(k) is None]
    if missing:
        raise DataError(
            where,
            f"get_data() returned no {' or '.join(missing)}; keys: {', '.join(map(str, returned)) or 'none'}",
        )
    unknown = sorted(set(map(str, returned)) - set(SCRIPT_KEYS))
    if unknown:
        raise DataError(
            where,
            f"get_data() returned unknown key {unknown[0]!r}; allowed: {', '.join(SCRIPT_KEYS)}",
        )
    return Dataset(
        name or "script",
        _as_X(returned["X"], where, "X"),
        _as_y(returned["y"], where, "y"),
        None if returned.get("X_valid") is None else _as_X(returned["X_valid"], where, "X_valid"),
        None if returned.get("y_valid") is None else _as_y(returned["y_valid"], where, "y_valid"),
        None
        if returned.get("sample_weight") is None
        else _as_y(returned["sample_weight"], where, "sample_weight").astype(float),
    )


def _last_line(ex: BaseException) -> str:
    lines = traceback.format_exception_only(type(ex), ex)
    return " ".join(line.strip() for line in lines if line.strip())


def _load_file(data: DictConfig) -> Dataset:
    path = Path(data.path).expanduser()
    where = f"data.path={data.path}"
    fmt = data.format or path.suffix.lower().lstrip(".")
    try:
        frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
    except Exception as ex:
        raise DataError(where, f"cannot be read as {fmt}: {_last_line(ex)}") from ex
    if data.target not in frame.columns:
        raise ConfigError(
            "data.target", data.target, f"no such column in {path.name}; columns: {_columns(frame)}"
        )
    for col in data.drop_columns:
        if col not in frame.columns or col == data.target:
            raise ConfigError(
                "data.drop_columns",
                col,
                f"no such feature column in {path.name}; columns: {_columns(frame)}",
            )
    frame = frame.drop(columns=list(data.drop_columns))
    missing = frame[data.target].isna()
    if missing.any():
        log.warning("dropping %d rows whose target %r is missing", int(missing.sum()), data.target)
        frame = frame.loc[~missing].reset_index(drop=True)
    if frame.empty:
        raise DataError(where, "has no rows with a target value")
    y = frame.pop(data.target).to_numpy()
    return Dataset(experiment_name(data), frame, y)


def _columns(frame: pd.DataFrame, limit: int = 12) -> str:
    cols = [str(c) for c in frame.columns]
    return ", ".join(cols[:limit]) + (f", ... ({len(cols)} in all)" if len(cols) > limit else "")


def _as_X(value: Any, where: str, key: str) -> Any:
    if isinstance(value, pd.Series):
        value = value.to_frame()
    if isinstance(value, pd.DataFrame) or sparse.issparse(value):
        X = value
    else:
        try:
            X = np.asarray(value)
        except Exception as ex:
            raise DataError(
                where,
                f"{key} is a {type(value).__name__}; expected a 2-D array, sparse matrix or DataFrame",
            ) from ex
        if X.dtype == object:
            X = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]) if X.ndim == 2 else X
    if X.ndim != 2:
        raise DataError(where, f"{key} has shape {X.shape}; expected 2-D (rows x features)")
    if isinstance(X, pd.DataFrame):
        X = X.copy()
        X.columns = [str(c) for c in X.columns]
    return X


def _as_y(value: Any, where: str, key: str) -> np.ndarray:
    y = value.to_numpy() if isinstance(value, pd.Series | pd.DataFrame) else np.asarray(value)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise DataError(where, f"{key} has shape {y.shape}; expected 1-D (one value per row)")
    return y


def _check(ds: Dataset, automl: DictConfig, source: str) -> None:
    task = automl.task
    pairs = [("X", ds.X, "y", ds.y)]
    if ds.X_valid is not None or ds.y_valid is not None:
        if ds.X_valid is None or ds.y_valid is None:
            raise DataError(source, "X_valid and y_valid must be given together")
        pairs.append(("X_valid", ds.X_valid, "y_valid", ds.y_valid))
    for xk, X, yk, y in pairs:
        if X.shape[0] != len(y):
            raise DataError(
                source, f"{xk} has {X.shape[0]} rows but {yk} has {len(y)}; they must match"
            )
    if ds.sample_weight is not None and len(ds.sample_weight) != len(ds.y):
        raise DataError(
            source, f"sample_weight has {len(ds.sample_weight)} values for {len(ds.y)} rows"
        )
    if ds.X_valid is not None and ds.X_valid.shape[1] != ds.X.shape[1]:
        raise DataError(source, f"X_valid has {ds.X_valid.shape[1]} columns, X has {ds.X.shape[1]}")
    if ds.n_rows < 2:
        raise DataError(source, f"has {ds.n_rows} rows; need at least 2")
    missing_y = pd.isna(ds.y)
    if missing_y.any():
        raise DataError(
            source, f"y has {int(missing_y.sum())} missing values; drop those rows or fill them"
        )
    _type_columns(ds, automl, source)
    if task == "regression":
        try:
            ds.y = ds.y.astype(float)
            if ds.y_valid is not None:
                ds.y_valid = ds.y_valid.astype(float)
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
            source, f"y has a single class ({_label(classes[0])}); classification needs two or more"
        )
    folds = automl.n_cross_validations
    if ds.X_valid is None and folds is not None and counts.min() < folds:
        # stratified folds still work: some validate without those classes, and a model
        # whose training rows lack one gives it probability 0 there (worker._fold)
        rare = ", ".join(
            f"{_label(c)} ({n})" for c, n in zip(classes, counts, strict=True) if n < folds
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
            f"class {_label(rare)} has a single row; a stratified holdout needs two per class",
        )


def _label(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _type_columns(ds: Dataset, automl: DictConfig, source: str) -> None:
    """Split DataFrame columns into numeric and categorical, and normalise their dtypes."""
    if not isinstance(ds.X, pd.DataFrame):
        if not ds.is_sparse and not np.issubdtype(np.asarray(ds.X).dtype, np.number):
            raise DataError(source, "X is not numeric; give a DataFrame for string columns")
        return
    frames = [ds.X] + ([ds.X_valid] if isinstance(ds.X_valid, pd.DataFrame) else [])
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
