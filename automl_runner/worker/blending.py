"""The arithmetic of the ensembles on out-of-fold predictions: scoring a blend fold by
fold, greedy ensemble selection and its bagged weights, and the stacker's features.
See docs/ensembles.md for the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import METRICS, Fold, better, score_fold
from ..records import PreparedData

# pseudo-folds for scoring when validation is one hold-out set
HOLDOUT_GROUPS = 5


class Scorer:
    """The OOF rows, their target and groups, and metric evaluation on any subset."""

    def __init__(self, data: PreparedData, metric: str) -> None:
        rows = data.oof_rows()
        if data.X_valid is not None:
            assert data.y_valid is not None
            self.y, self.w = data.y_valid, None
        else:
            self.y = data.y[rows]
            self.w = None if data.sample_weight is None else data.sample_weight[rows]
        if data.X_valid is None and len(data.splits) > 1:
            self.groups = np.concatenate(
                [np.full(len(valid), k) for k, (_, valid) in enumerate(data.splits)]
            )
        else:
            rng = np.random.default_rng(data.seed)
            self.groups = rng.permutation(len(self.y)) % HOLDOUT_GROUPS
        self.data, self.metric = data, metric

    def fold(self, pred: np.ndarray, idx: np.ndarray) -> Fold:
        d = self.data
        w = None if self.w is None else self.w[idx]
        if d.task == "classification":
            assert d.classes is not None
            return Fold(
                self.y[idx], d.classes[np.argmax(pred, axis=1)], pred, d.classes, w, d.y_range
            )
        return Fold(self.y[idx], pred, None, None, w, d.y_range)

    def primary(self, pred: np.ndarray, idx: np.ndarray) -> float:
        return float(METRICS[self.metric].fn(self.fold(pred, idx)))

    def constant(self) -> np.ndarray:
        """The prediction that knows nothing of the features, for every row: the class
        shares (classification) or the mean of the target (regression)."""
        d = self.data
        if d.task == "classification":
            assert d.classes is not None
            shares = (self.y[:, None] == d.classes[None, :]).mean(axis=0)
            return np.tile(shares, (len(self.y), 1))
        return np.full(len(self.y), float(np.mean(self.y)))

    def constant_score(self) -> float:
        """The mean over folds of the constant prediction's primary metric."""
        return self.fold_mean(self.constant())

    def fold_rows(self) -> list[np.ndarray]:
        """Each fold's (or pseudo-fold's) rows."""
        return [np.flatnonzero(self.groups == k) for k in np.unique(self.groups)]

    def fold_mean(self, pred: np.ndarray) -> float:
        """The mean over folds of the primary metric of predictions for all rows."""
        return float(np.mean([self.primary(pred[rows], rows) for rows in self.fold_rows()]))

    def cross_scored(
        self, fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray]
    ) -> dict[str, list[float]]:
        """Per-fold scores of fit_predict(train rows, test rows): the predictions for each
        fold's rows, from a model fitted on the other folds' rows (or from a fixed blend)."""
        scores: dict[str, list[float]] = {}
        for test in self.fold_rows():
            train = np.setdiff1d(np.arange(len(self.y)), test)
            pred = fit_predict(train, test)
            for name, value in score_fold(self.data.task, self.fold(pred, test)).items():
                scores.setdefault(name, []).append(value)
        return scores


@dataclass(frozen=True)
class Selection:
    """How the voting ensemble chooses its weights (automl.ensemble_size and
    automl.ensemble_bags): up to `rounds` greedy picks on each of `bags` random halves of
    the pool; one bag is one selection over the whole pool."""

    rounds: int = 20
    bags: int = 20


def voting_weights(
    preds: list[np.ndarray], scorer: Scorer, selection: Selection, seed: int
) -> np.ndarray:
    """Each member's share of the greedy picks over all rows, averaged over the bags (sums
    to 1; rounded to 4 decimals, the weights then used and logged).

    Where that blend scores below the best member alone, the ensemble would never be
    chosen; the whole pool's one selection is used instead (it starts from the best member
    and adds only picks that improve the blend).
    """
    n, rows = len(preds), np.arange(len(scorer.y))

    def one_selection() -> np.ndarray:
        counts = greedy_weights(preds, scorer, rows, selection.rounds)
        return np.round(counts / counts.sum(), 4)

    if selection.bags == 1 or n <= 2:
        return one_selection()
    rng = np.random.default_rng(seed)
    size = max(2, round(n / 2))
    shares = np.zeros(n)
    for _ in range(selection.bags):
        bag = np.sort(rng.choice(n, size=size, replace=False))
        counts = greedy_weights([preds[j] for j in bag], scorer, rows, selection.rounds)
        shares[bag] += counts / counts.sum()
    bagged = np.round(shares / selection.bags, 4)
    alone: float | None = None  # the best member's score
    for p in preds:
        score = scorer.fold_mean(p)
        if better(scorer.metric, score, alone):
            alone = score
    assert alone is not None
    if better(scorer.metric, alone, scorer.fold_mean(blend(preds, bagged, rows))):
        return one_selection()
    return bagged


def greedy_weights(
    preds: list[np.ndarray], scorer: Scorer, idx: np.ndarray, rounds: int
) -> np.ndarray:
    """Pick counts of greedy selection with replacement over the rows `idx`, starting
    from the member that scores best on those rows."""
    counts = np.zeros(len(preds))
    first, current = -1, None
    for j, p in enumerate(preds):
        s = scorer.primary(p[idx], idx)
        if current is None or better(scorer.metric, s, current):
            first, current = j, s
    counts[first] = 1
    total = preds[first][idx].astype(float)
    for r in range(1, rounds):
        best_j, best_s = -1, None
        for j, p in enumerate(preds):
            s = scorer.primary((total + p[idx]) / (r + 1), idx)
            if best_s is None or better(scorer.metric, s, best_s):
                best_j, best_s = j, s
        if best_s is None or (current is not None and better(scorer.metric, current, best_s)):
            break  # no pick helps any more
        counts[best_j] += 1
        total += preds[best_j][idx]
        current = best_s
    return counts


def blend(preds: list[np.ndarray], weights: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return sum(w * p[idx] for w, p in zip(weights, preds, strict=True) if w) / weights.sum()


def stack_features(preds: list[np.ndarray], task: str) -> np.ndarray:
    """Members' predictions laid out as scikit-learn's Stacking* feeds its final estimator."""
    cols = []
    for p in preds:
        if task == "regression":
            cols.append(p.reshape(-1, 1))
        elif p.shape[1] == 2:  # binary: the positive class's probability only
            cols.append(p[:, 1:])
        else:
            cols.append(p)
    return np.hstack(cols)


def meta_model(task: str) -> Any:
    from sklearn.linear_model import LogisticRegression, RidgeCV

    if task == "classification":
        return LogisticRegression(C=1.0, max_iter=2000)
    return RidgeCV(alphas=np.logspace(-3, 3, 13))


def encoded(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.searchsorted(classes, y)


def meta_predict(meta: Any, F: np.ndarray, task: str) -> np.ndarray:
    return meta.predict_proba(F) if task == "classification" else meta.predict(F)
