"""Ensemble iterations, built after the search from its out-of-fold predictions.

``plan_ensembles`` picks the pool (the best of each family first, then the best of the
rest); ``run_ensemble`` builds and scores one ensemble in a task like an iteration: a
``VotingEnsemble`` by bagged greedy selection, or a ``StackEnsemble`` (a linear model on
the members' predictions), both scored fold by fold from out-of-fold predictions only
(``blending``); ``build_ensemble`` assembles the refit members as plain scikit-learn
Voting*/Stacking* estimators. The rules, and why they are so: docs/ensembles.md.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import best_first, better
from ..records import (
    COMPLETED,
    FAILED,
    SKIPPED,
    Candidate,
    IterationResult,
    PreparedData,
)
from .blending import (
    Scorer,
    Selection,
    blend,
    encoded,
    meta_model,
    meta_predict,
    stack_features,
    voting_weights,
)
from .pipeline import take_rows

log = logging.getLogger(__name__)

VOTING, STACKING = "VotingEnsemble", "StackEnsemble"


def pool(
    results: list[IterationResult], data: PreparedData, metric: str, size: int
) -> list[IterationResult]:
    """Up to `size` distinct completed iterations that can join an ensemble, best first:
    the best of each family first, then the best of the rest; none that scores no better
    than the constant prediction.

    A long search converges on one family, often one preprocessor with small variations
    of its hyperparameters; the best N alone would then be near-copies whose errors
    coincide, and an ensemble of them no better than its best member. A member no better
    than a constant has learnt nothing worth a weight, and one that diverged (an SGD
    regressor on hotel_rates: CV R^2 -39604, test -1.6e9) wrecks the stacking ensemble's
    predictions however small its coefficient (test R^2 0.863, its other members 0.95).
    """
    floor = Scorer(data, metric).constant_score()
    ok = [
        r
        for r in results
        if r.status == COMPLETED
        and r.oof is not None
        and not r.candidate.members
        and (data.task == "regression" or r.oof_proba)
        and r.mean(metric) is not None
        and np.isfinite(r.mean(metric))  # type: ignore[arg-type]
        and better(metric, r.mean(metric), floor)  # type: ignore[arg-type]
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
    return out


def _build(
    kind: str,
    members: list[IterationResult],
    data: PreparedData,
    metric: str,
    selection: Selection,
    iteration: int,
) -> IterationResult:
    scorer = Scorer(data, metric)
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
        blended = blend(preds, weights, everything)
        # scored fold by fold as a search iteration is (see the module docstring)
        scores = scorer.cross_scored(lambda _train, test: blended[test])
        return _scored(iteration, candidate, scores, blended, data)
    F = stack_features(preds, data.task)
    target = scorer.y if data.classes is None else encoded(scorer.y, data.classes)

    def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        meta = meta_model(data.task).fit(F[train], target[train])
        return _padded(meta_predict(meta, F[test], data.task), meta, data)

    scores = scorer.cross_scored(fit_predict)
    meta = meta_model(data.task).fit(F, target)
    candidate = ensemble_candidate(kind, members, meta=meta)
    oof = _padded(meta_predict(meta, F, data.task), meta, data)
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
            named, final_estimator=meta_model("classification"), cv=2, stack_method="predict_proba"
        )
    else:
        stack = StackingRegressor(named, final_estimator=meta_model("regression"), cv=2)
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
