"""How well each column alone predicts the target, out of fold: the leakage guardrail's
measure (data/guardrails.py).

A column that predicts the target almost perfectly on its own is most often a copy or a
consequence of it (an outcome recorded after the fact, a label encoded as a feature, a
row number of data sorted by class), and the search would find it and score
near-perfect models that fail in use. Every column gets the same cheap one-feature
model, scored on folds it was not fitted on: a shallow decision tree for numbers, the
majority class (or mean target) of each value for categories. On a seeded sample of
rows and within a time budget, so the check costs well under a second on small data and
a few seconds at most on large data, however many rows it has.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

# rows the one-column models are fitted and scored on (a seeded sample of larger data):
# enough for a score within a percent or so, cheap enough for hundreds of columns
SAMPLE_ROWS = 5000
# folds of the out-of-fold score
FOLDS = 3
# leaves of a numeric column's tree: enough to separate dozens of classes (or to follow a
# copy of a regression target within a few percent of its range), too few to memorise
# rows; and rows per leaf, so a leaf is not one row's noise
TREE_LEAVES = 32
LEAF_ROWS = 5


@dataclass(frozen=True)
class ColumnScores:
    """The out-of-fold score of each column checked; `columns` were to be checked, and
    `scores` may hold fewer when the time budget ran out."""

    scores: dict[str, float]
    columns: int
    rows: int


def single_column_scores(
    frame: pd.DataFrame,
    y: np.ndarray,
    task: str,
    categorical: list[str],
    seed: int,
    seconds: float,
) -> ColumnScores:
    """Balanced accuracy (classification) or R^2 (regression) of each column of `frame`
    alone, out of fold on a sample; columns in order until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    rng = np.random.default_rng(seed)
    rows = np.arange(len(y))
    if len(rows) > SAMPLE_ROWS:
        rows = np.sort(rng.choice(rows, SAMPLE_ROWS, replace=False))
    target = _encoded(y[rows], task)
    folds = _folds(target, task, seed)
    scores: dict[str, float] = {}
    for name in frame.columns:
        if time.monotonic() > deadline:
            break
        values = frame[name].iloc[rows]
        if name in categorical:
            predicted = _per_value(values, target, folds, task)
        else:
            predicted = _tree(values, target, folds, task, seed)
        scores[str(name)] = _score(target, predicted, task)
    return ColumnScores(scores, frame.shape[1], len(rows))


def _encoded(y: np.ndarray, task: str) -> np.ndarray:
    """Class labels as 0..k-1 (classification), the target as floats (regression)."""
    if task == "classification":
        return np.unique(y, return_inverse=True)[1].astype(np.int64)
    return np.asarray(y, dtype=float)


def _folds(target: np.ndarray, task: str, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded folds, stratified where every class has a row for each fold."""
    from sklearn.model_selection import KFold, StratifiedKFold

    zeros = np.zeros(len(target))
    if task == "classification" and np.bincount(target).min() >= FOLDS:
        return list(StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(zeros, target))
    return list(KFold(FOLDS, shuffle=True, random_state=seed).split(zeros))


def _tree(
    values: pd.Series,
    target: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    task: str,
    seed: int,
) -> np.ndarray:
    """Out-of-fold predictions of a shallow tree on one numeric column; a missing value
    is a value of its own (below every other), so missingness that leaks is seen too."""
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    finite = x[np.isfinite(x)]
    x = np.where(np.isnan(x), (finite.min() - 1.0) if finite.size else 0.0, x).reshape(-1, 1)
    model = (DecisionTreeClassifier if task == "classification" else DecisionTreeRegressor)(
        max_leaf_nodes=TREE_LEAVES, min_samples_leaf=LEAF_ROWS, random_state=seed
    )
    predicted = np.zeros(len(target), dtype=target.dtype)
    for train, test in folds:
        predicted[test] = model.fit(x[train], target[train]).predict(x[test])
    return predicted


def _per_value(
    values: pd.Series, target: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], task: str
) -> np.ndarray:
    """Out-of-fold predictions of one categorical column: the majority class (or mean
    target) of its value in the training folds; a value not seen there gets the
    training folds' majority class (mean)."""
    codes = pd.factorize(values, use_na_sentinel=False)[0]
    n_codes = int(codes.max()) + 1 if len(codes) else 0
    predicted = np.zeros(len(target), dtype=target.dtype)
    for train, test in folds:
        c, t = codes[train], target[train]
        rows = np.bincount(c, minlength=n_codes)
        if task == "classification":
            counts = np.zeros((n_codes, int(target.max()) + 1))
            np.add.at(counts, (c, t), 1)
            by_value = counts.argmax(axis=1)
            fallback = np.bincount(t).argmax()
        else:
            by_value = np.bincount(c, weights=t, minlength=n_codes) / np.maximum(rows, 1)
            fallback = t.mean()
        predicted[test] = np.where(rows[codes[test]] > 0, by_value[codes[test]], fallback)
    return predicted


def _score(target: np.ndarray, predicted: np.ndarray, task: str) -> float:
    """Balanced accuracy (the mean recall over classes: 1/k by chance, whatever the
    balance, so a large class does not pass for a leak) or R^2."""
    if task == "classification":
        seen = np.bincount(target)
        hits = np.bincount(target[predicted == target], minlength=len(seen))
        present = seen > 0
        return float(np.mean(hits[present] / seen[present]))
    spread = float(np.sum((target - target.mean()) ** 2))
    return 1.0 - float(np.sum((target - predicted) ** 2)) / spread if spread > 0 else 0.0
