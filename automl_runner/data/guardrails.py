"""Data guardrails, as Azure AutoML reports them before training: what the data holds
that the user should know before trusting a score.

Each check is a pure function of the loaded training data (and the config) that gives
one ``Check``: PASSED (nothing found), DONE (found, and the pipeline handles it: missing
values imputed, many categories grouped, the validation split made) or ALERTED (found,
and only the user can fix it: a leaking column, an identifier, imbalanced classes). An
alert never changes the data or the search; ``automl.guardrails=strict`` makes it an
error before the search (``enforce``). The experiment's setup runs them, the console
shows them as a table and the tracking layer logs them (experiment/setup.py).

The thresholds are below, each with the reason it is where it is.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config.schema import AutoMLConfig
from ..errors import DataError
from ..worker.pipeline import MAX_CATEGORIES
from .dataset import Dataset, label
from .drift import drifted_columns
from .leakage import single_column_scores

PASSED, DONE, ALERTED = "PASSED", "DONE", "ALERTED"

# class imbalance: ALERTED when the smallest class has fewer than a fifth of the rows of
# the largest (the ratio Azure's imbalance guidance starts worrying at): accuracy then
# rewards predicting the large classes, and a class of a few rows is barely learnt
IMBALANCE_RATIO = 0.2
# ID-like and high-cardinality columns are only judged from this many rows on: in a
# handful of rows every string column is unique
ID_MIN_ROWS = 20
# duplicate rows: ALERTED from 1% of the rows on; a copy in the training folds and one in
# the validation fold make the CV score a score on seen rows
DUPLICATE_SHARE = 0.01
# leakage: ALERTED when one column alone reaches this out-of-fold balanced accuracy
# (classification) or R^2 (regression); the strongest honest single features of the
# builtin sets stay below 0.96 (iris' petal width)
LEAKAGE_SCORE = 0.98
# the leakage check's time budget (data/leakage.py samples rows; this bounds the columns)
LEAKAGE_SECONDS = 2.0
# columns named in one line of detail
SHOWN = 5


@dataclass(frozen=True)
class Check:
    """One guardrail's outcome: its name, PASSED / DONE / ALERTED, one line of detail, and
    the columns it is about."""

    name: str
    status: str
    detail: str
    columns: list[str] = field(default_factory=list)


@dataclass
class Guardrails:
    """Every check of one experiment, and the seconds they took."""

    checks: list[Check]
    seconds: float = 0.0

    @property
    def alerts(self) -> list[Check]:
        return [c for c in self.checks if c.status == ALERTED]

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "checks": [asdict(c) for c in self.checks]}


def evaluate(ds: Dataset, automl: AutoMLConfig, X_test: Any = None) -> Guardrails:
    """Every guardrail on the training data `ds` (and the test rows `X_test`, if any)."""
    started = time.monotonic()
    checks = [validation_split(ds, automl), class_imbalance(ds.y, automl.task)]
    if ds.is_sparse:
        checks += [Check(name, PASSED, "not checked: sparse input") for name in _COLUMN_CHECKS]
    else:
        frame = columns_of(ds.X)
        checks += [
            missing_values(frame, automl.preprocess),
            high_cardinality(frame, ds.categorical),
            id_columns(frame, _numeric(ds, frame), ds.categorical),
            constant_columns(frame),
            duplicate_rows(frame, ds.y),
            leakage(frame.drop(columns=ds.dates), ds.y, automl.task, ds.categorical, automl.seed),
        ]
    checks.append(train_test_drift(ds.X, X_test, ds.categorical, automl.seed))
    return Guardrails(checks, time.monotonic() - started)


def enforce(report: Guardrails, mode: str, source: str) -> None:
    """With automl.guardrails=strict, the first alert as a one-line error."""
    alerts = report.alerts
    if mode != "strict" or not alerts:
        return
    more = (
        f"; {len(alerts) - 1} more: {', '.join(a.name for a in alerts[1:])}" if alerts[1:] else ""
    )
    raise DataError(
        source,
        f"guardrail {alerts[0].name} ALERTED: {alerts[0].detail}{more} "
        "(automl.guardrails=strict; automl.guardrails=warn runs anyway)",
    )


def _numeric(ds: Dataset, frame: pd.DataFrame) -> list[str]:
    """The numeric columns: as typed for a DataFrame, every column of an array."""
    return ds.numeric if isinstance(ds.X, pd.DataFrame) else [str(c) for c in frame.columns]


def columns_of(X: Any) -> pd.DataFrame:
    """X as a DataFrame (a numpy array's columns named x0, x1, ... as elsewhere), no copy."""
    if isinstance(X, pd.DataFrame):
        return X
    A = np.asarray(X)
    return pd.DataFrame(A, columns=[f"x{j}" for j in range(A.shape[1])], copy=False)


# --- the checks ---------------------------------------------------------------------------
def validation_split(ds: Dataset, automl: AutoMLConfig) -> Check:
    """DONE: how every candidate is validated (Azure reports it the same way)."""
    stratified = " stratified by class," if automl.task == "classification" else ""
    if ds.X_valid is not None:
        detail = f"X_valid given: every candidate validated on its {ds.X_valid.shape[0]} rows"
    elif automl.n_cross_validations is not None:
        detail = (
            f"{automl.n_cross_validations}-fold cross-validation,{stratified} seeded "
            f"(automl.seed={automl.seed}): every candidate sees the same folds"
        )
    else:
        share = float(automl.validation_size or 0)
        detail = (
            f"holdout of {share:.0%} ({round(share * ds.n_rows)} rows),{stratified} seeded "
            f"(automl.seed={automl.seed}): every candidate sees the same split"
        )
    return Check("validation_split", DONE, detail)


def class_imbalance(y: np.ndarray, task: str) -> Check:
    """ALERTED when the smallest class has under IMBALANCE_RATIO of the largest's rows."""
    if task != "classification":
        return Check("class_imbalance", PASSED, "regression: no classes")
    classes, counts = np.unique(y, return_counts=True)
    small, large = int(np.argmin(counts)), int(np.argmax(counts))
    ratio = counts[small] / counts[large]
    smallest = label(classes[small])
    share = counts[small] / counts.sum()
    if ratio >= IMBALANCE_RATIO:
        return Check(
            "class_imbalance",
            PASSED,
            f"{len(classes)} classes; the smallest, {smallest}, has {ratio:.2f} of the largest's rows",
        )
    return Check(
        "class_imbalance",
        ALERTED,
        f"class {smallest} has {_rows(counts[small])} ({share:.1%}), {ratio:.2f} of class "
        f"{label(classes[large])}'s {counts[large]}: accuracy rewards the large classes; "
        "prefer automl.primary_metric=AUC_weighted or norm_macro_recall, or add rows of the small class",
        [smallest],
    )


def missing_values(frame: pd.DataFrame, preprocess: bool) -> Check:
    """DONE when the pipeline imputes them; ALERTED when automl.preprocess is off."""
    shares = frame.isna().mean()
    shares = shares[shares > 0].sort_values(ascending=False)
    if shares.empty:
        return Check("missing_values", PASSED, "no missing values")
    columns = [str(c) for c in shares.index]
    listed = _listed([f"{c} {s:.1%}" for c, s in shares.items()])
    if preprocess:
        detail = (
            f"imputed (numbers: median plus a missing-value indicator; categories: 'missing'): "
            f"{listed}"
        )
        return Check("missing_values", DONE, detail, columns)
    return Check(
        "missing_values",
        ALERTED,
        f"not imputed with automl.preprocess=false: {listed}; set automl.preprocess=true or fill them",
        columns,
    )


def high_cardinality(frame: pd.DataFrame, categorical: list[str]) -> Check:
    """DONE when a categorical column has more values than the one-hot encoding keeps."""
    many = {c: int(frame[c].nunique()) for c in categorical}
    many = {c: n for c, n in many.items() if n > MAX_CATEGORIES}
    if not many:
        detail = (
            f"no categorical column has more than {MAX_CATEGORIES} values"
            if categorical
            else "no categorical column"
        )
        return Check("high_cardinality", PASSED, detail)
    listed = _listed([f"{c} ({n} values)" for c, n in many.items()])
    return Check(
        "high_cardinality",
        DONE,
        f"one-hot encoded as the most frequent values plus one 'infrequent' column, "
        f"{MAX_CATEGORIES} at most: {listed}",
        [str(c) for c in many],
    )


def id_columns(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> Check:
    """ALERTED for an identifier: strings unique per row, or integers unique per row
    that rise or fall with the row number or number the rows 1..n in some order (a
    shuffled key of scattered integers is not told from a measurement; the leakage
    check catches one that predicts the target)."""
    n = len(frame)
    found: dict[str, str] = {}
    names = list(categorical) + list(numeric)
    if n >= ID_MIN_ROWS:
        for c in names:
            kind = _id_kind(frame[c], c in categorical, n)
            if kind:
                found[str(c)] = kind
    if not found:
        return Check("id_columns", PASSED, "no column looks like a row identifier")
    listed = _listed([f"{c} ({k})" for c, k in found.items()])
    return Check(
        "id_columns",
        ALERTED,
        f"{listed} unique per row: an identifier, not a feature; drop it (data.drop_columns)",
        list(found),
    )


def _id_kind(s: pd.Series, categorical: bool, n: int) -> str:
    """What makes `s` an identifier ("" if nothing does)."""
    if s.isna().any() or s.nunique() < n:
        return ""
    if categorical:
        return "strings"
    v = s.to_numpy(dtype=float)
    if not np.all(np.mod(v, 1) == 0):
        return ""
    steps = np.diff(v)
    if np.all(steps > 0) or np.all(steps < 0):
        return "integers in row order"
    return "the integers 1..n shuffled" if v.max() - v.min() + 1 == n else ""


def constant_columns(frame: pd.DataFrame) -> Check:
    """ALERTED for columns with one value (or none) in every row: they carry nothing."""
    constant = [str(c) for c in frame.columns if frame[c].nunique(dropna=False) <= 1]
    if not constant:
        return Check("constant_columns", PASSED, "every column has two values or more")
    return Check(
        "constant_columns",
        ALERTED,
        f"{_listed(constant)} hold one value in every row: no information; drop them",
        constant,
    )


def duplicate_rows(frame: pd.DataFrame, y: np.ndarray) -> Check:
    """ALERTED when more than DUPLICATE_SHARE of the rows repeat an earlier row's features."""
    hashes = pd.Series(pd.util.hash_pandas_object(frame, index=False).to_numpy())
    repeats = hashes.duplicated()
    with_target = pd.DataFrame({"x": hashes, "y": y}).duplicated()
    count, conflicting = int(repeats.sum()), int((repeats & ~with_target).sum())
    share = count / max(len(frame), 1)
    if count == 0:
        return Check("duplicate_rows", PASSED, "no two rows have the same features")
    detail = (
        f"{share:.1%} of the rows ({count}) repeat an earlier row's features, "
        f"{conflicting} of them with another target"
    )
    if share <= DUPLICATE_SHARE:
        return Check("duplicate_rows", PASSED, detail)
    return Check(
        "duplicate_rows",
        ALERTED,
        f"{detail}: copies on both sides of a validation split flatter the scores; "
        "drop them unless they are real repeats",
    )


def leakage(
    frame: pd.DataFrame, y: np.ndarray, task: str, categorical: list[str], seed: int
) -> Check:
    """ALERTED when one column alone predicts the target almost perfectly (data/leakage.py)."""
    measured = single_column_scores(frame, y, task, categorical, seed, LEAKAGE_SECONDS)
    what = "balanced accuracy" if task == "classification" else "R^2"
    scope = f"{len(measured.scores)} columns, {measured.rows} rows, {what} out of fold"
    if len(measured.scores) < measured.columns:
        scope = f"{len(measured.scores)} of {measured.columns} columns in {LEAKAGE_SECONDS:g} s, {scope.split(', ', 1)[1]}"
    leaks = {c: s for c, s in measured.scores.items() if s >= LEAKAGE_SCORE}
    if not leaks:
        best = max(measured.scores.items(), key=lambda kv: kv[1], default=None)
        strongest = f"; the strongest, {best[0]}, {best[1]:.3f}" if best else ""
        return Check("leakage", PASSED, f"no column alone predicts the target ({scope}){strongest}")
    ranked = sorted(leaks.items(), key=lambda kv: -kv[1])
    listed = _listed([f"{c} ({s:.3f})" for c, s in ranked])
    return Check(
        "leakage",
        ALERTED,
        f"{listed} alone predict(s) the target ({scope}): a copy or consequence of it? "
        "drop it (data.drop_columns) unless it is known when predicting",
        [c for c, _ in ranked],
    )


def train_test_drift(train: Any, test: Any, categorical: list[str], seed: int) -> Check:
    """ALERTED when the test rows' columns are distributed unlike the training rows'
    (data/drift.py); PASSED with "no test set" when there is none."""
    if test is None:
        return Check("train_test_drift", PASSED, "no test set")
    if any(hasattr(part, "tocsr") for part in (train, test)):
        return Check("train_test_drift", PASSED, "not checked: sparse input")
    drifted = drifted_columns(columns_of(train), columns_of(test), categorical, seed)
    if not drifted:
        return Check(
            "train_test_drift", PASSED, "the test rows are distributed like the training rows"
        )
    listed = _listed([f"{c} ({d:.2f})" for c, d in drifted.items()])
    return Check(
        "train_test_drift",
        ALERTED,
        f"the test rows differ from the training rows in {listed} (distance 0..1): the test "
        "score may not say how the model does on new data; check how the test rows were chosen",
        list(drifted),
    )


_COLUMN_CHECKS = (
    "missing_values",
    "high_cardinality",
    "id_columns",
    "constant_columns",
    "duplicate_rows",
    "leakage",
)


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _listed(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (
        f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    )
