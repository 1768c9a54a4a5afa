"""Azure AutoML's metric names, computed from predictions of one validation fold.

Classification metrics that rank (AUC, average precision) use predicted probabilities
when the estimator has them and decision scores otherwise, on the one-vs-rest
binarised labels, so every estimator family can be scored by every metric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from .records import IterationResult


@dataclass(frozen=True)
class Fold:
    """What one validation fold gives a metric."""

    y_true: np.ndarray
    y_pred: np.ndarray
    # (n, n_classes) scores for classification, None for regression
    y_score: np.ndarray | None
    classes: np.ndarray | None
    sample_weight: np.ndarray | None
    # max(y) - min(y) over the whole training target, for the normalised errors
    y_range: float

    @cached_property
    def confusion(self) -> np.ndarray | None:
        """The (true, predicted) confusion matrix over `classes` in their order, without
        sample weights, counted once for the label metrics; None where scikit-learn's own
        functions must answer (weights, or a label outside the classes)."""
        if self.sample_weight is not None or self.classes is None:
            return None
        classes = np.asarray(self.classes)
        k = len(classes)
        try:
            sorter = np.argsort(classes, kind="mergesort")
            codes = []
            for labels in (self.y_true, self.y_pred):
                at = np.searchsorted(classes, labels, sorter=sorter)
                index = sorter[np.minimum(at, k - 1)]
                if not np.array_equal(classes[index], labels):
                    return None
                codes.append(index)
        except TypeError:  # labels of another type than the classes
            return None
        return np.bincount(codes[0] * k + codes[1], minlength=k * k).reshape(k, k)


@dataclass(frozen=True)
class Metric:
    task: str
    greater_is_better: bool
    fn: Callable[[Fold], float]


def _binarized(f: Fold) -> tuple[np.ndarray, np.ndarray]:
    assert f.classes is not None and f.y_score is not None
    if len(f.classes) == 2:
        return (f.y_true == f.classes[1]).astype(int), f.y_score[:, 1]
    # label_binarize's indicator, without its input checks (a hot path of the ensembles)
    return (f.y_true[:, None] == f.classes[None, :]).astype(int), f.y_score


def _present(f: Fold) -> tuple[np.ndarray, np.ndarray]:
    # a class absent from this fold has no AUC; drop its column (weight 0 anyway)
    y, s = _binarized(f)
    if y.ndim == 2:
        keep = y.sum(axis=0) > 0
        return y[:, keep], s[:, keep]
    return y, s


def auc_weighted(f: Fold) -> float:
    y, s = _present(f)
    if f.sample_weight is None and np.isfinite(s).all():
        return _rank_auc_weighted(y, s)
    return float(skm.roc_auc_score(y, s, average="weighted", sample_weight=f.sample_weight))


def _rank_auc_weighted(y: np.ndarray, s: np.ndarray) -> float:
    """roc_auc_score(y, s, average="weighted") without sample weights, from ranks.

    The area under the ROC curve is the Mann-Whitney statistic: the chance that a
    positive row scores above a negative one, ties counting one half, which average
    ranks give. One sort per column instead of a ROC curve per class, several times
    faster: the greedy ensemble selection scores hundreds of blends with it.
    """
    n = len(y)
    y2 = np.ascontiguousarray(y.reshape(n, -1).T, dtype=float)  # (columns, rows)
    s2 = np.ascontiguousarray(s.reshape(n, -1).T)
    positives = y2.sum(axis=1)
    negatives = n - positives
    if (positives == 0).any() or (negatives == 0).any():
        # what roc_auc_score says of a column with a single class
        raise ValueError("Only one class present in y_true. ROC AUC score is not defined.")
    order = np.argsort(s2, axis=1)
    ordered = np.take_along_axis(s2, order, axis=1)
    # tied scores share the average of their positions: runs of equal sorted values
    starts_run = np.empty(ordered.shape, dtype=bool)
    starts_run[:, 0] = True
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=starts_run[:, 1:])
    flat = starts_run.ravel()
    first = np.flatnonzero(flat)
    last = np.append(first[1:], flat.size) - 1
    position = np.tile(np.arange(1, n + 1, dtype=float), len(s2))
    run_rank = (position[first] + position[last]) / 2
    ranks = run_rank[np.cumsum(flat) - 1].reshape(s2.shape)
    rank_sums = (ranks * np.take_along_axis(y2, order, axis=1)).sum(axis=1)
    auc = (rank_sums - positives * (positives + 1) / 2) / (positives * negatives)
    return float(np.average(auc, weights=positives))


def average_precision_weighted(f: Fold) -> float:
    y, s = _present(f)
    truth, scores = y.reshape(len(y), -1).T, s.reshape(len(s), -1).T
    if f.sample_weight is None and np.isfinite(s).all() and truth.any(axis=1).all():
        return _average_precision_weighted(truth, scores)
    return float(
        skm.average_precision_score(y, s, average="weighted", sample_weight=f.sample_weight)
    )


def _average_precision_weighted(y: np.ndarray, s: np.ndarray) -> float:
    """average_precision_score(y, s, average="weighted") without sample weights, for
    (columns, rows) arrays whose every column has a positive row.

    Per column, the precision at each distinct score, highest first, weighted by the
    recall it adds: the sum scikit-learn takes over its precision-recall curve, without
    the curve's input checks (they were most of an iteration's scoring time).
    """
    aps, positives = [], []
    for truth, score in zip(y, s, strict=True):
        order = np.argsort(score, kind="mergesort")[::-1]
        ranked = score[order]
        # the last row of each run of tied scores closes a threshold
        ends = np.append(np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1)
        tps = np.cumsum(truth[order], dtype=float)[ends]
        precision = tps / (ends + 1)
        added = np.diff(tps, prepend=0.0) / tps[-1]
        aps.append(float(np.sum(added * precision)))
        positives.append(tps[-1])
    return float(np.average(aps, weights=positives))


def accuracy(f: Fold) -> float:
    cm = f.confusion
    if cm is None:
        return float(skm.accuracy_score(f.y_true, f.y_pred, sample_weight=f.sample_weight))
    return float(np.trace(cm) / cm.sum())


def norm_macro_recall(f: Fold) -> float:
    # Azure: (macro recall - R) / (1 - R), R the recall of a random guess (1 / classes)
    assert f.classes is not None
    chance = 1.0 / len(f.classes)
    cm = f.confusion
    if cm is None:
        recall = skm.recall_score(
            f.y_true,
            f.y_pred,
            labels=f.classes,
            average="macro",
            sample_weight=f.sample_weight,
            zero_division=0,
        )
    else:  # a class with no rows has recall 0 (zero_division=0), in the mean all the same
        support = cm.sum(axis=1)
        recall = np.mean(np.divide(np.diag(cm), support, out=np.zeros(len(cm)), where=support > 0))
    return float(max(0.0, (recall - chance) / (1.0 - chance)))


def precision_weighted(f: Fold) -> float:
    cm = f.confusion
    if cm is None:
        return float(
            skm.precision_score(
                f.y_true,
                f.y_pred,
                average="weighted",
                sample_weight=f.sample_weight,
                zero_division=0,
            )
        )
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(np.diag(cm), predicted, out=np.zeros(len(cm)), where=predicted > 0)
    return float(np.average(precision, weights=support))


def _normalised(err: float, f: Fold) -> float:
    return float(err / f.y_range) if f.y_range > 0 else float(err)


def spearman(f: Fold) -> float:
    rho = stats.spearmanr(f.y_true, f.y_pred).statistic
    return 0.0 if np.isnan(rho) else float(rho)


METRICS: dict[str, Metric] = {
    "AUC_weighted": Metric("classification", True, auc_weighted),
    "accuracy": Metric("classification", True, accuracy),
    "average_precision_score_weighted": Metric("classification", True, average_precision_weighted),
    "norm_macro_recall": Metric("classification", True, norm_macro_recall),
    "precision_score_weighted": Metric("classification", True, precision_weighted),
    "spearman_correlation": Metric("regression", True, spearman),
    "normalized_root_mean_squared_error": Metric(
        "regression",
        False,
        lambda f: _normalised(
            skm.root_mean_squared_error(f.y_true, f.y_pred, sample_weight=f.sample_weight), f
        ),
    ),
    "r2_score": Metric(
        "regression",
        True,
        lambda f: float(skm.r2_score(f.y_true, f.y_pred, sample_weight=f.sample_weight)),
    ),
    "normalized_mean_absolute_error": Metric(
        "regression",
        False,
        lambda f: _normalised(
            skm.mean_absolute_error(f.y_true, f.y_pred, sample_weight=f.sample_weight), f
        ),
    ),
}


def task_metrics(task: str) -> list[str]:
    return [name for name, m in METRICS.items() if m.task == task]


def score_fold(task: str, fold: Fold) -> dict[str, float]:
    """Every metric of the task on one fold; a metric that cannot be computed is NaN."""
    out: dict[str, float] = {}
    for name in task_metrics(task):
        try:
            out[name] = METRICS[name].fn(fold)
        except ValueError:
            out[name] = float("nan")
    return out


def class_scores(model: Any, X: Any) -> np.ndarray:
    """(n, n_classes) scores: probabilities if the model has them, else decision values."""
    # hasattr is False where scikit-learn hides predict_proba (SGD hinge, SVC without probability)
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))
    d = np.asarray(model.decision_function(X))
    if d.ndim == 1:  # binary: one column of scores for the positive class
        return np.column_stack([-d, d])
    return d


def perfect(metric: str, score: float) -> bool:
    """Is `score` the metric's best possible value (1 for every score here, 0 for the
    normalised errors), where no candidate can do better?"""
    best = 1.0 if METRICS[metric].greater_is_better else 0.0
    return bool(abs(score - best) <= 1e-12)


def better(metric: str, a: float, b: float | None) -> bool:
    """Is score a better than score b (None = no score yet)?"""
    if b is None or np.isnan(b):
        return not np.isnan(a)
    if np.isnan(a):
        return False
    return a > b if METRICS[metric].greater_is_better else a < b


def best_first(metric: str) -> Callable[[IterationResult], tuple[float, int]]:
    """Sort key ranking results best first by their mean `metric`, ties to the earlier
    iteration; results without a finite score go last."""
    sign = -1.0 if METRICS[metric].greater_is_better else 1.0

    def key(r: IterationResult) -> tuple[float, int]:
        score = r.mean(metric)
        if score is None or not np.isfinite(score):
            return (np.inf, r.iteration)
        return (sign * score, r.iteration)

    return key
