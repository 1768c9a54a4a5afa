"""What runs inside a Ray task: pure functions from (candidate, data) to a small record.

Workers never talk to MLflow; the driver is the single writer. An exception inside an
iteration becomes a FAILED result carrying its traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .metrics import Fold, class_scores, score_fold
from .space import Candidate, build_pipeline

COMPLETED, FAILED, TIMEOUT, CANCELLED = "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"


@dataclass
class PreparedData:
    """Everything an iteration reads; put into the Ray object store once."""

    X: Any
    y: np.ndarray
    X_valid: Any
    y_valid: np.ndarray | None
    sample_weight: np.ndarray | None
    # (train_idx, valid_idx) per fold; empty when X_valid is the validation set
    splits: list[tuple[np.ndarray, np.ndarray]]
    task: str
    primary_metric: str
    classes: np.ndarray | None
    y_range: float
    preprocess: bool
    numeric: list[str]
    categorical: list[str]
    seed: int
    # whether X or X_valid has missing values: without any (and without categorical
    # columns) the pipeline has no imputation step, which would copy the data twice
    impute: bool = True
    # columns of dates (dates.py), turned into numbers in the pipeline's prepare step
    dates: list[str] = field(default_factory=list)

    def oof_rows(self) -> np.ndarray:
        """Rows of the validation predictions an iteration keeps, in the order it keeps them.

        CV: every training row, fold after fold; one split: its validation rows; X_valid:
        indices into X_valid.
        """
        if self.X_valid is not None:
            return np.arange(self.X_valid.shape[0])
        return np.concatenate([valid for _, valid in self.splits])

    def pipeline(self, candidate: Candidate) -> Any:
        if candidate.members:
            raise ValueError("an ensemble candidate has no single pipeline; use refit()")
        return build_pipeline(
            candidate,
            preprocess=self.preprocess,
            numeric=self.numeric,
            categorical=self.categorical,
            impute=self.impute,
            dates=self.dates,
            dataframe=isinstance(self.X, pd.DataFrame),
            sparse_input=not isinstance(self.X, pd.DataFrame | np.ndarray),
            seed=self.seed,
        )


@dataclass
class IterationResult:
    iteration: int
    candidate: Candidate
    status: str
    # metric name -> one score per fold
    fold_scores: dict[str, list[float]] = field(default_factory=dict)
    duration: float = 0.0
    node: str = ""
    log: str = ""
    error: str | None = None
    # validation predictions on PreparedData.oof_rows(): class scores (n, classes) or
    # predictions (n,); the ensembles are built from them without refitting anything
    oof: np.ndarray | None = None
    # whether oof holds probabilities (soft voting and stacking need them)
    oof_proba: bool = False

    def mean(self, metric: str) -> float | None:
        scores = self.fold_scores.get(metric)
        if not scores or self.status != COMPLETED:
            return None
        return float(np.nanmean(scores)) if not np.all(np.isnan(scores)) else float("nan")

    def std(self, metric: str) -> float | None:
        scores = self.fold_scores.get(metric)
        if not scores or self.status != COMPLETED:
            return None
        return float(np.nanstd(scores)) if not np.all(np.isnan(scores)) else float("nan")


def best_first(metric: str) -> Any:
    """Sort key ranking results best first by their mean `metric`, ties to the earlier
    iteration; results without a finite score go last."""
    from .metrics import METRICS

    sign = -1.0 if METRICS[metric].greater_is_better else 1.0

    def key(r: IterationResult) -> tuple[float, int]:
        score = r.mean(metric)
        ok = score is not None and np.isfinite(score)
        return (sign * score if ok else np.inf, r.iteration)  # type: ignore[operator]

    return key


def node_name() -> str:
    """host/Ray node id of the process running this (several nodes may share a host)."""
    try:
        import ray

        if ray.is_initialized():
            return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:12]}"
    except ImportError:
        pass
    return f"{socket.gethostname()}/pid-{os.getpid()}"


def take_rows(X: Any, idx: np.ndarray) -> Any:
    return X.iloc[idx] if isinstance(X, pd.DataFrame) else X[idx]


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


def _fold(data: PreparedData, model: Any, X: Any, y: np.ndarray, weight: np.ndarray | None) -> Fold:
    y_pred = np.asarray(model.predict(X))
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


def evaluate(data: PreparedData, candidate: Candidate) -> tuple[dict[str, list[float]], Fold]:
    """Fit and score the candidate on every fold (or on X_valid).

    Returns (metric -> per-fold scores, the validation predictions of all folds joined
    in PreparedData.oof_rows() order).
    """
    from sklearn.base import clone

    template = data.pipeline(candidate)
    folds = [(None, None)] if data.X_valid is not None else data.splits
    scores: dict[str, list[float]] = {}
    parts: list[Fold] = []
    w = data.sample_weight
    for train, valid in folds:
        model = clone(template)
        if train is None or valid is None:
            _fit(model, data.X, data.y, w)
            assert data.y_valid is not None
            fold = _fold(data, model, data.X_valid, data.y_valid, None)
        else:
            # the training rows are this task's own copy: the fit transforms them in place
            # instead of holding another copy per step (the logged model keeps copy=True)
            _set_copy(model, False)
            _fit(model, take_rows(data.X, train), data.y[train], None if w is None else w[train])
            # but the validation rows go through the model twice (labels, then scores):
            # an in-place scaler would scale them twice when no step before it copies
            _set_copy(model, True)
            fold = _fold(
                data,
                model,
                take_rows(data.X, valid),
                data.y[valid],
                None if w is None else w[valid],
            )
        for name, value in score_fold(data.task, fold).items():
            scores.setdefault(name, []).append(value)
        parts.append(fold)
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
    result = IterationResult(iteration, candidate, COMPLETED, node=node_name())
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(captured),
        contextlib.redirect_stderr(captured),
    ):
        warnings.simplefilter("always")
        try:
            result.fold_scores, joined = evaluate(data, candidate)
            if data.task == "classification":
                result.oof = joined.y_score
                result.oof_proba = _has_proba(data.pipeline(candidate))
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
            from .ensemble import build_ensemble

            members = [refit(m, data) for m in candidate.members]
            return build_ensemble(candidate, members, data)
        return _fit(data.pipeline(candidate), data.X, data.y, data.sample_weight)


def raw_names(X: Any) -> list[str]:
    """The user's column names (x0, x1, ... for arrays without names)."""
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    return [f"x{i}" for i in range(X.shape[1])]


def explain_best(model: Any, data: PreparedData, settings: dict[str, Any]) -> tuple[Any, Any]:
    """(Explanation, the raw rows it explains) for the refit best pipeline.

    `settings`: `rows` (how many to explain) plus explain_pipeline's keyword arguments.
    """
    from .explain import explain_pipeline

    options = dict(settings)
    wanted = options.pop("rows")
    source = data.X_valid if data.X_valid is not None else data.X
    n = source.shape[0]
    rng = np.random.default_rng(data.seed)
    idx = np.arange(n) if n <= wanted else np.sort(rng.choice(n, wanted, replace=False))
    rows = take_rows(source, idx)
    explanation = explain_pipeline(
        model,
        rows,
        data.X,
        task=data.task,
        classes=None if data.classes is None else list(data.classes),
        raw_names=raw_names(data.X),
        seed=data.seed,
        **options,
    )
    return explanation, take_rows(rows, np.arange(explanation.shap_engineered.shape[1]))
