"""Where the data comes from, as the ``data`` group names it: a set scikit-learn ships,
a data script's ``get_data()``, or a CSV or Parquet file; each read into a ``Dataset``
and checked.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..config.schema import AutoMLConfig, BuiltinData, DataConfig, FileData, ScriptData
from ..config.settings import data_name
from ..errors import ConfigError, DataError
from .dataset import Dataset, check, hold_out_test

log = logging.getLogger(__name__)

# what a data script's get_data() may return
SCRIPT_KEYS = ("X", "y", "X_valid", "y_valid", "sample_weight", "X_test", "y_test")


def load(data: DataConfig, automl: AutoMLConfig, started: float | None = None) -> Dataset:
    """Load and check the data for this experiment; raise DataError/ConfigError on bad input.

    `started` (time.monotonic()) is when the experiment began: a data script's time
    counts against automl.experiment_timeout_minutes from there.
    """
    if isinstance(data, BuiltinData):
        ds = _load_builtin(data.name)
    elif isinstance(data, FileData):
        ds = _load_file(data)
    else:
        ds = _load_script(
            Path(data.path).expanduser(), data.name, script_deadline(data, automl, started)
        )
    if automl.test_size is not None:
        if ds.X_test is not None:
            raise ConfigError(
                "automl.test_size",
                automl.test_size,
                f"{source(data)} gives a test set already (X_test, or data.test_path); "
                "set automl.test_size=null or drop that test set",
            )
        ds = hold_out_test(ds, automl.test_size, automl.seed, automl.task == "classification")
    check(ds, automl, source=source(data))
    return ds


def source(data: DataConfig) -> str:
    """The data's name in an error line: data=digits or data.path=..."""
    return f"data={data.name}" if isinstance(data, BuiltinData) else f"data.path={data.path}"


def _load_builtin(name: str) -> Dataset:
    from sklearn import datasets

    if name == "digits":
        # exactly the seed's get_data(): rows 10 onward, as numpy arrays
        digits = datasets.load_digits()
        return Dataset(name, digits.data[10:, :], digits.target[10:])
    loader = getattr(datasets, f"load_{name}")
    bunch = loader(as_frame=True)
    return Dataset(name, bunch.data, bunch.target.to_numpy())


@dataclass(frozen=True)
class Deadline:
    """When a data script must have returned (time.monotonic(); None: never), and the
    setting that says so, as the error line names it."""

    at: float | None
    setting: str = ""
    minutes: float = 0.0
    # what the error line adds about the setting
    note: str = ""

    def seconds_left(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def missed(self, what: str) -> str:
        return (
            f"{what} did not return within {self.minutes:g} minutes "
            f"({self.setting}={self.minutes:g}{self.note}); make it faster or raise "
            f"{self.setting}"
        )


def script_deadline(data: ScriptData, automl: AutoMLConfig, started: float | None) -> Deadline:
    """data.timeout_minutes from now, or the end of automl.experiment_timeout_minutes
    counted from `started`, whichever comes first."""
    now = time.monotonic()
    limits = []
    if data.timeout_minutes is not None:
        limits.append(
            Deadline(now + data.timeout_minutes * 60, "data.timeout_minutes", data.timeout_minutes)
        )
    budget = automl.experiment_timeout_minutes
    if budget is not None:
        at = (started or now) + budget * 60
        note = ", counted from the experiment's start"
        limits.append(Deadline(at, "automl.experiment_timeout_minutes", budget, note))
    return min(limits, key=lambda d: d.at or 0.0, default=Deadline(None))


def _load_script(path: Path, name: str | None, deadline: Deadline) -> Dataset:
    where = f"data.path={path}"
    module_name = f"_automl_get_data_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DataError(where, "cannot be imported as a Python file")
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)
    # let the script import modules that sit next to it
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        _in_time(lambda: loader.exec_module(module), deadline, where, "importing the script")
        get_data = getattr(module, "get_data", None)
        if not callable(get_data):
            raise DataError(where, "defines no get_data() function")
        returned = _in_time(get_data, deadline, where, "get_data()")
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
        X_test=None
        if returned.get("X_test") is None
        else _as_X(returned["X_test"], where, "X_test"),
        y_test=None
        if returned.get("y_test") is None
        else _as_y(returned["y_test"], where, "y_test"),
    )


def _in_time(call: Callable[[], Any], deadline: Deadline, where: str, what: str) -> Any:
    """`call()` (the user's code) in a daemon thread, waited for until the deadline: past
    it, one line, and the thread left behind cannot keep the process alive. What it
    raises is one line too, sys.exit() included (it would end the command silently)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as ex:  # noqa: BLE001  (SystemExit too: reported, not obeyed)
            box["error"] = ex
        finally:
            done.set()

    threading.Thread(target=target, name="automl-get-data", daemon=True).start()
    # a wait that Ctrl-C and SIGTERM interrupt
    if not done.wait(deadline.seconds_left()):
        raise DataError(where, deadline.missed(what))
    ex = box.get("error")
    if ex is None:
        return box.get("value")
    if isinstance(ex, DataError):
        raise ex
    if isinstance(ex, SystemExit):
        raise DataError(
            where,
            f"{what} called sys.exit({ex.code!r}); return the data, or raise an exception "
            "to fail the run",
        ) from None
    if isinstance(ex, Exception):  # the user's code: report its own error line
        raise DataError(where, f"{what} raised {_last_line(ex)}") from ex
    raise ex


def _last_line(ex: BaseException) -> str:
    lines = traceback.format_exception_only(type(ex), ex)
    return " ".join(line.strip() for line in lines if line.strip())


def _load_file(data: FileData) -> Dataset:
    X, y = _read_table(data, data.path, "data.path")
    ds = Dataset(data_name(data), X, y)
    if data.test_path:
        ds.X_test, ds.y_test = _read_table(data, data.test_path, "data.test_path")
    return ds


def _read_table(data: FileData, file: str, key: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(features, target) of one file: the training file, or the test file beside it."""
    path = Path(file).expanduser()
    where = f"{key}={file}"
    fmt = data.format or path.suffix.lower().lstrip(".")
    try:
        frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
    except Exception as ex:
        raise DataError(where, f"cannot be read as {fmt}: {_last_line(ex)}") from ex
    if fmt != "parquet":
        _refuse_duplicate_header(path, where)
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
    return frame, y


def _refuse_duplicate_header(path: Path, where: str) -> None:
    """A CSV header that names a column twice: pandas would rename the second to "a.1"
    without a word, and the model would then want a column the file does not have."""
    header = pd.read_csv(path, header=None, nrows=1, dtype=str).iloc[0].tolist()
    _refuse_duplicates([str(c) for c in header], where, "the header")


def _refuse_duplicates(names: list[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(
                where, f"{what} names column {name!r} twice; column names must be unique"
            )
        seen.add(name)


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
        names = [str(c) for c in X.columns]
        _refuse_duplicates(names, where, key)
        X = X.copy()
        X.columns = names
    return X


def _as_y(value: Any, where: str, key: str) -> np.ndarray:
    y = value.to_numpy() if isinstance(value, pd.Series | pd.DataFrame) else np.asarray(value)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise DataError(where, f"{key} has shape {y.shape}; expected 1-D (one value per row)")
    return y
