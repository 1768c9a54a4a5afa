"""One iteration and one refit: pure functions from (candidate, data) to a small record
or a fitted model, run inside a Ray task (or in-process by the serial executor).

Workers never talk to MLflow; the driver is the single writer. An exception inside an
iteration becomes a FAILED result carrying its traceback.
"""

from __future__ import annotations

import contextlib
import io
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import Fold, class_scores, score_fold
from ..records import COMPLETED, FAILED, Candidate, IterationResult, PreparedData
from .ensemble import build_ensemble
from .pipeline import model_bytes, pipeline_for, take_rows


def _fit(pipe: Any, X: Any, y: np.ndarray, weight: np.ndarray | None) -> Any:
    from sklearn.utils.validation import has_fit_parameter

    if weight is not None and has_fit_parameter(pipe.steps[-1][1], "sample_weight"):
        return pipe.fit(X, y, model__sample_weight=weight)
    return pipe.fit(X, y)


def _set_copy(pipeline: Any, copy: bool) -> None:
    """copy= of every step before the estimator that has one (the scalers)."""
    for _, step in pipeline.steps[:-1]:
        if "copy" in step.get_params(deep=False):
            step.set_params(copy=copy)


def _fold(
    data: PreparedData,
    model: Any,
    X: Any,
    y: np.ndarray,
    weight: np.ndarray | None,
    cost: Cost | None = None,
) -> Fold:
    started = time.perf_counter()
    y_pred = np.asarray(model.predict(X))
    if cost is not None:
        cost.predict_seconds += time.perf_counter() - started
        cost.predicted_rows += len(y_pred)
    y_score = None
    if data.task == "classification":
        assert data.classes is not None
        raw = class_scores(model, X)
        # align the model's class columns with every class of the data set
        y_score = np.full((raw.shape[0], len(data.classes)), np.min(raw) - 1.0)
        if hasattr(model, "predict_proba"):
            y_score[:] = 0.0  # a class the model never saw has probability 0
        index = {c: i for i, c in enumerate(data.classes)}
        for j, c in enumerate(model.classes_):
            y_score[:, index[c]] = raw[:, j]
    return Fold(y, y_pred, y_score, data.classes, weight, data.y_range)


@dataclass
class Cost:
    """What a candidate costs, measured while it is scored: the leaderboard's fit time,
    predict time per 1,000 rows and model size."""

    fit_seconds: float = 0.0
    folds: int = 0
    predict_seconds: float = 0.0
    predicted_rows: int = 0
    model_bytes: int = 0

    def add_fit(self, seconds: float) -> None:
        self.fit_seconds += seconds
        self.folds += 1


def evaluate(
    data: PreparedData, candidate: Candidate, cost: Cost | None = None
) -> tuple[dict[str, list[float]], Fold]:
    """Fit and score the candidate on every fold (or on X_valid); `cost` gathers the
    fit and predict times and the size of the last fold's model.

    Returns (metric -> per-fold scores, the validation predictions of all folds joined
    in PreparedData.oof_rows() order).
    """
    from sklearn.base import clone

    template = pipeline_for(data, candidate)
    folds = [(None, None)] if data.X_valid is not None else data.splits
    scores: dict[str, list[float]] = {}
    parts: list[Fold] = []
    w = data.sample_weight
    for train, valid in folds:
        model = clone(template)
        started = time.perf_counter()
        if train is None or valid is None:
            _fit(model, data.X, data.y, w)
            if cost is not None:
                cost.add_fit(time.perf_counter() - started)
            assert data.y_valid is not None
            fold = _fold(data, model, data.X_valid, data.y_valid, None, cost)
        else:
            # the training rows are this task's own copy: the fit transforms them in place
            # instead of holding another copy per step (the logged model keeps copy=True)
            _set_copy(model, False)
            _fit(model, take_rows(data.X, train), data.y[train], None if w is None else w[train])
            if cost is not None:
                cost.add_fit(time.perf_counter() - started)
            # but the validation rows go through the model twice (labels, then scores):
            # an in-place scaler would scale them twice when no step before it copies
            _set_copy(model, True)
            fold = _fold(
                data,
                model,
                take_rows(data.X, valid),
                data.y[valid],
                None if w is None else w[valid],
                cost,
            )
        for name, value in score_fold(data.task, fold).items():
            scores.setdefault(name, []).append(value)
        parts.append(fold)
    if cost is not None:
        cost.model_bytes = model_bytes(model)
    joined = Fold(
        np.concatenate([f.y_true for f in parts]),
        np.concatenate([f.y_pred for f in parts]),
        None if parts[0].y_score is None else np.concatenate([f.y_score for f in parts]),
        data.classes,
        None,
        data.y_range,
    )
    return scores, joined


def run_iteration(iteration: int, candidate: Candidate, data: PreparedData) -> IterationResult:
    """One iteration: CV-score one candidate. Never raises; failure is a FAILED result."""
    start = time.perf_counter()
    captured = io.StringIO()
    result = IterationResult(iteration, candidate, COMPLETED)
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(captured),
        contextlib.redirect_stderr(captured),
    ):
        warnings.simplefilter("always")
        try:
            cost = Cost()
            result.fold_scores, joined = evaluate(data, candidate, cost)
            result.fit_seconds = cost.fit_seconds / max(cost.folds, 1)
            result.predict_seconds_per_1000 = (
                1000 * cost.predict_seconds / cost.predicted_rows if cost.predicted_rows else None
            )
            result.model_bytes = cost.model_bytes
            if data.task == "classification":
                result.oof = joined.y_score
                result.oof_proba = _has_proba(pipeline_for(data, candidate))
            else:
                result.oof = joined.y_pred.astype(float)
        except Exception:
            result.status = FAILED
            result.error = traceback.format_exc()
    lines = [captured.getvalue().rstrip()] if captured.getvalue().strip() else []
    seen = set()
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in seen:
            seen.add(text)
            lines.append(text)
    if result.error:
        lines.append(result.error)
    result.log = "\n".join(lines)
    result.duration = time.perf_counter() - start
    return result


def _has_proba(pipeline: Any) -> bool:
    # an unfitted pipeline says whether its estimator will offer predict_proba
    try:
        return hasattr(pipeline.steps[-1][1], "predict_proba")
    except Exception:
        return False


def refit(candidate: Candidate, data: PreparedData) -> Any:
    """The candidate's model fitted on all training rows (an ensemble: its members)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if candidate.members:
            members = [refit(m, data) for m in candidate.members]
            return build_ensemble(candidate, members, data)
        return _fit(pipeline_for(data, candidate), data.X, data.y, data.sample_weight)
