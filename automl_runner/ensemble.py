"""Ensemble iterations, built from the search's out-of-fold predictions.

Every iteration keeps its validation predictions (``IterationResult.oof``). After the
search, two more iterations are scored from them without fitting anything:

- ``VotingEnsemble``: bagged greedy ensemble selection (Caruana et al., 2004). On each
  of ``Selection.bags`` random halves of the pool: start from the bag's best iteration,
  repeatedly add (with replacement) the member that most improves the primary metric of
  the averaged predictions, until no pick helps. A member's voting weight is its share of
  the picks, averaged over the bags. One selection over the whole pool stops after a few
  picks on the members that happen to fit the out-of-fold rows best; averaging over bags
  keeps the near-equals it passed over, and the blend predicts new rows better. Where
  the bags' blend scores below the best member alone, the one selection is used.
- ``StackEnsemble``: a linear model (logistic regression / ridge) on the members'
  predictions.

Each is built like an iteration: a Ray task reading the shared data (both at once when
two slots are free), under automl.iteration_timeout_minutes, a failure a FAILED
iteration that does not stop the experiment. Both are scored from out-of-fold
predictions only, fold by fold like a search iteration, so no row is scored by a model
fitted on it:

- the voting ensemble as an iteration is: its blend of the members' out-of-fold
  predictions, scored on each fold's rows. Its selection saw those rows, just as taking
  the best search iteration does; scoring it on other rows than the single best would
  make the two scores unequal (the single best's is the maximum of many noisy scores)
  and leave ensembles that do better on new data behind.
- the stacking ensemble fits a model (its linear model), so per validation fold that
  model is fitted on the other folds' out-of-fold rows and scored on that fold's.

The final weights and linear model use all rows.
The fitted ensemble is plain scikit-learn: VotingClassifier/Regressor or
StackingClassifier/Regressor over the members refit on all rows.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import METRICS, Fold, better, score_fold
from .space import Candidate
from .worker import (
    COMPLETED,
    FAILED,
    IterationResult,
    PreparedData,
    best_first,
    node_name,
    take_rows,
)

log = logging.getLogger(__name__)

VOTING, STACKING = "VotingEnsemble", "StackEnsemble"
# the status of a voting ensemble not built (selection kept one member): never recorded
SKIPPED = "SKIPPED"
# pseudo-folds for scoring when validation is one hold-out set
HOLDOUT_GROUPS = 5


def pool(
    results: list[IterationResult], data: PreparedData, metric: str, size: int
) -> list[IterationResult]:
    """Up to `size` distinct completed iterations that can join an ensemble, best first:
    the best of each family first, then the best of the rest.

    A long search converges on one family, often one preprocessor with small variations
    of its hyperparameters; the best N alone would then be near-copies whose errors
    coincide, and an ensemble of them no better than its best member.
    """
    ok = [
        r
        for r in results
        if r.status == COMPLETED
        and r.oof is not None
        and not r.candidate.members
        and (data.task == "regression" or r.oof_proba)
        and r.mean(metric) is not None
        and np.isfinite(r.mean(metric))  # type: ignore[arg-type]
    ]
    ok.sort(key=best_first(metric))
    distinct, seen = [], set()
    for r in ok:
        if r.candidate.key() not in seen:
            seen.add(r.candidate.key())
            distinct.append(r)
    leaders = family_leaders(distinct)
    chosen = leaders[:size]
    taken = {id(r) for r in chosen}
    chosen += [r for r in distinct if id(r) not in taken][: size - len(chosen)]
    return sorted(chosen, key=best_first(metric))


def family_leaders(ranked: list[IterationResult]) -> list[IterationResult]:
    """The first (best) result of each family in a best-first list, in that order."""
    out, families = [], set()
    for r in ranked:
        if r.candidate.family not in families:
            families.add(r.candidate.family)
            out.append(r)
    return out


class _Scorer:
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
    preds: list[np.ndarray], scorer: _Scorer, selection: Selection, seed: int
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
    if better(scorer.metric, alone, scorer.fold_mean(_blend(preds, bagged, rows))):
        return one_selection()
    return bagged


def greedy_weights(
    preds: list[np.ndarray], scorer: _Scorer, idx: np.ndarray, rounds: int
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


def _blend(preds: list[np.ndarray], weights: np.ndarray, idx: np.ndarray) -> np.ndarray:
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


def _meta(task: str) -> Any:
    from sklearn.linear_model import LogisticRegression, RidgeCV

    if task == "classification":
        return LogisticRegression(C=1.0, max_iter=2000)
    return RidgeCV(alphas=np.logspace(-3, 3, 13))


def _encoded(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.searchsorted(classes, y)


def _meta_predict(meta: Any, F: np.ndarray, task: str) -> np.ndarray:
    return meta.predict_proba(F) if task == "classification" else meta.predict(F)


@dataclass
class EnsemblePlan:
    """Which ensembles to build, in order, and the search iterations they choose from."""

    kinds: list[str]
    # best first; light copies (no logs) that travel to the task building the ensemble
    members: list[IterationResult]


def plan_ensembles(
    results: list[IterationResult],
    data: PreparedData,
    metric: str,
    *,
    voting: bool,
    stacking: bool,
    candidates: int,
) -> EnsemblePlan | None:
    """The ensembles these search results allow; None (and why, logged) if none."""
    kinds = [k for k, on in ((VOTING, voting), (STACKING, stacking)) if on]
    if not kinds:
        return None
    members = pool(results, data, metric, candidates)
    if len(members) < 2:
        log.info("ensembles skipped: fewer than 2 iterations with usable predictions")
        return None
    if data.task == "classification":
        assert data.classes is not None
        if len(np.unique(data.y)) != len(data.classes):
            log.info("ensembles skipped: the validation set has classes the training rows lack")
            return None
    light = [dataclasses.replace(r, log="", error=None) for r in members]
    return EnsemblePlan(kinds, light)


def run_ensemble(
    kind: str,
    members: list[IterationResult],
    data: PreparedData,
    metric: str,
    selection: Selection,
    iteration: int,
) -> IterationResult:
    """Build and CV-score one ensemble (a Ray task, or in-process). Never raises: a
    failure is a FAILED result; a voting ensemble whose selection keeps one member alone
    is a SKIPPED result (not an iteration: the driver logs why and records nothing)."""
    start = time.perf_counter()
    try:
        out = _build(kind, members, data, metric, selection, iteration)
    except Exception:
        out = IterationResult(
            iteration,
            ensemble_candidate(kind, members),
            FAILED,
            error=traceback.format_exc(),
        )
        out.log = out.error or ""
    out.duration = time.perf_counter() - start
    out.node = node_name()
    return out


def _build(
    kind: str,
    members: list[IterationResult],
    data: PreparedData,
    metric: str,
    selection: Selection,
    iteration: int,
) -> IterationResult:
    scorer = _Scorer(data, metric)
    preds = [np.asarray(r.oof, dtype=float) for r in members]
    everything = np.arange(len(scorer.y))
    if kind == VOTING:
        weights = voting_weights(preds, scorer, selection, data.seed)
        used = np.flatnonzero(weights)
        chosen = [members[i] for i in used]
        candidate = ensemble_candidate(kind, chosen, tuple(float(weights[i]) for i in used))
        if len(used) < 2:
            why = f"ensemble selection kept iteration {chosen[0].iteration} alone"
            return IterationResult(iteration, candidate, SKIPPED, error=why)
        blend = _blend(preds, weights, everything)
        # scored fold by fold as a search iteration is (see the module docstring)
        scores = scorer.cross_scored(lambda _train, test: blend[test])
        return _scored(iteration, candidate, scores, blend, data)
    F = stack_features(preds, data.task)
    target = scorer.y if data.classes is None else _encoded(scorer.y, data.classes)

    def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        meta = _meta(data.task).fit(F[train], target[train])
        return _padded(_meta_predict(meta, F[test], data.task), meta, data)

    scores = scorer.cross_scored(fit_predict)
    meta = _meta(data.task).fit(F, target)
    candidate = ensemble_candidate(kind, members, meta=meta)
    oof = _padded(_meta_predict(meta, F, data.task), meta, data)
    return _scored(iteration, candidate, scores, oof, data)


def numbered(results: list[IterationResult], first_iteration: int) -> list[IterationResult]:
    """The built ensembles (SKIPPED ones logged and left out), numbered on from
    `first_iteration` in plan order, so the iteration numbers have no gap."""
    out: list[IterationResult] = []
    for r in results:
        if r.status == SKIPPED:
            log.info("%s skipped: %s", r.candidate.estimator, r.error)
            continue
        r.iteration = first_iteration + len(out)
        out.append(r)
    return out


def _padded(pred: np.ndarray, meta: Any, data: PreparedData) -> np.ndarray:
    """Meta probabilities with a column for every class (a fold may lack a class)."""
    if data.task != "classification":
        return pred
    assert data.classes is not None
    full = np.zeros((pred.shape[0], len(data.classes)))
    full[:, np.asarray(meta.classes_, dtype=int)] = pred
    return full


def ensemble_candidate(
    kind: str,
    members: list[IterationResult],
    weights: tuple[float, ...] | None = None,
    meta: Any = None,
) -> Candidate:
    """The candidate of an ensemble of `members` (equal weights unless given)."""
    its = tuple(m.iteration for m in members)
    return Candidate(
        preprocessor="",
        preprocessor_target="",
        preprocessor_params={},
        estimator=kind,
        estimator_target="",
        estimator_params={},
        description=f"{kind} of {', '.join(map(str, its))}",
        family=kind,
        origin="ensemble",
        members=tuple(m.candidate for m in members),
        member_iterations=its,
        weights=weights or tuple(1.0 for _ in members),
        meta=meta,
    )


def _scored(
    iteration: int,
    candidate: Candidate,
    scores: dict[str, list[float]],
    oof: np.ndarray,
    data: PreparedData,
) -> IterationResult:
    return IterationResult(
        iteration,
        candidate,
        COMPLETED,
        fold_scores=scores,
        oof=oof,
        oof_proba=data.task == "classification",
    )


def build_ensemble(candidate: Candidate, fitted: list[Any], data: PreparedData) -> Any:
    """The scikit-learn ensemble over members already fitted on all training rows."""
    from sklearn.ensemble import (
        StackingClassifier,
        StackingRegressor,
        VotingClassifier,
        VotingRegressor,
    )
    from sklearn.frozen import FrozenEstimator

    named = [
        (f"iteration_{i}", FrozenEstimator(m))
        for i, m in zip(candidate.member_iterations, fitted, strict=True)
    ]
    classification = data.task == "classification"
    # the members are frozen and the stacker is replaced below, so fit() only has to
    # learn the classes and the columns: a few rows do, and the data is not copied
    rows = _assembly_rows(data)
    X, y = take_rows(data.X, rows), data.y[rows]
    if candidate.estimator == VOTING:
        weights = list(candidate.weights)
        if classification:
            return VotingClassifier(named, voting="soft", weights=weights).fit(X, y)
        return VotingRegressor(named, weights=weights).fit(X, y)
    # fit() trains a final estimator on the members' in-sample predictions; it is replaced
    # by the one fitted on out-of-fold predictions, which is what was scored
    if classification:
        stack: Any = StackingClassifier(
            named, final_estimator=_meta("classification"), cv=2, stack_method="predict_proba"
        )
    else:
        stack = StackingRegressor(named, final_estimator=_meta("regression"), cv=2)
    with warnings.catch_warnings():
        # a class with a single row among the few
        warnings.filterwarnings("ignore", message="The least populated class")
        stack.fit(X, y)
    stack.final_estimator_ = candidate.meta
    return stack


def _assembly_rows(data: PreparedData, per_class: int = 4, regression_rows: int = 64) -> np.ndarray:
    """A few training rows holding every class (up to `per_class` rows of each)."""
    if data.task != "classification":
        return np.arange(min(regression_rows, len(data.y)))
    picked = [np.flatnonzero(data.y == c)[:per_class] for c in np.unique(data.y)]
    return np.sort(np.concatenate(picked))
