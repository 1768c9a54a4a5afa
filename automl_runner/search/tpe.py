"""The default search (``automl.search=tpe``): a portfolio of strong defaults, then a few
tuned asks for each family within noise of the leader, then per ask a family chosen by
rank and cost, and its point from that family's own Optuna TPE study. The whole rule, and
why: docs/search.md.
"""

from __future__ import annotations

import logging
import math
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics import METRICS
from ..records import Candidate, IterationResult
from ..space import Component, SearchSpace
from .points import as_internal, distribution, fail_state, suggest_params, untried

log = logging.getLogger(__name__)


@dataclass
class _Family:
    """What the search knows of one estimator family."""

    component: Component
    study: Any
    best: float = -math.inf  # in "higher is better" units
    best_se: float = 0.0  # standard error over folds of that best score
    completed: int = 0
    tuned: int = 0  # model-based iterations asked (or told, on resume)
    failed: int = 0
    # every point of its space has been tried: never picked again
    exhausted: bool = False
    seconds: list[float] = field(default_factory=list)

    def cost(self) -> float:
        # measured median duration once known; the YAML's relative cost before that
        return float(np.median(self.seconds)) if self.seconds else float(self.component.cost)


class TPESearch:
    """Portfolio of strong defaults, then cost-aware family choice + per-family TPE."""

    # families ranked r = 0, 1, 2, ... by best score are picked with weight DECAY**r
    DECAY = 0.5
    # a family that failed this many times without one success is dropped
    MAX_FAILURES = 2
    # a family within this many standard errors (over folds) of the leader's best score...
    NOISE_SE = 2.0
    # ...gets this many model-based iterations before the ranks decide
    MIN_TUNED = 3

    def __init__(self, space: SearchSpace, seed: int, metric: str) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # `group` (conditional spaces: each preprocessor's own parameters) is stable in
        # practice but still flagged experimental
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.space = space
        self.seed = seed
        self.metric = metric
        self.sign = 1.0 if METRICS[metric].greater_is_better else -1.0
        self.rng = np.random.default_rng(seed)
        self.families: dict[str, _Family] = {}
        for est in space.estimators:
            sampler = optuna.samplers.TPESampler(
                seed=(seed * 1_000_003 + zlib.crc32(est.key.encode())) % 2**31,
                n_startup_trials=4,
                multivariate=True,
                group=True,
                constant_liar=True,
            )
            study = optuna.create_study(direction="maximize", sampler=sampler)
            self.families[est.key] = _Family(est, study)
        self.default_pre = next(
            (p for p in space.preprocessors if p.key == "standard_scaler"), space.preprocessors[0]
        )
        # cheapest first; ties in a seeded order
        tie = self.rng.permutation(len(space.estimators))
        order = sorted(
            range(len(space.estimators)), key=lambda i: (space.estimators[i].cost, tie[i])
        )
        self.portfolio = [
            space.candidate(
                self.default_pre, space.estimators[i], {}, space.estimators[i].default, "portfolio"
            )
            for i in order
        ]
        self.seen: set[str] = set()
        # keys this search asked for (told ones it did not ask for are a resumed run's)
        self.asked: set[str] = set()
        # candidate key -> Optuna trials asked for it and not yet told
        self.trials: dict[str, list[Any]] = {}

    # --- ask -----------------------------------------------------------------------------
    def ask(self, n: int) -> list[Candidate]:
        out = []
        for _ in range(n):
            # a resumed experiment told us some portfolio entries already ran
            while self.portfolio and self.portfolio[0].key() in self.seen:
                self.portfolio.pop(0)
            candidate = self.portfolio.pop(0) if self.portfolio else self._model_based()
            if candidate is None:  # every family's space is used up
                break
            self.seen.add(candidate.key())
            self.asked.add(candidate.key())
            out.append(candidate)
        return out

    def _model_based(self) -> Candidate | None:
        while (family := self._pick_family()) is not None:
            candidate = self._from_study(family) or self._untried(family)
            if candidate is not None:
                family.tuned += 1
                return candidate
            family.exhausted = True
            log.info("search: every point of %s's space has been tried", family.component.key)
        return None

    def _from_study(self, family: _Family) -> Candidate | None:
        for _ in range(5):
            trial = family.study.ask()
            candidate = self._suggest(trial, family.component)
            if candidate.key() not in self.seen:
                self.trials.setdefault(candidate.key(), []).append(trial)
                return candidate
            # a point already tried: no new information; let TPE move on
            family.study.tell(trial, state=fail_state())
        return None

    def _untried(self, family: _Family) -> Candidate | None:
        """A point of the family's space not tried yet, at random; None if there is none.

        TPE proposing only tried points means its space is small or its model has
        converged; a point it would not pick is still worth more than a repeat."""
        est = family.component
        # as _suggest: a scale-invariant family only ever gets the default preprocessor
        fixed_pre = est.scale_invariant
        pres = [self.default_pre] if fixed_pre else self.space.preprocessors
        for _ in range(50):
            pre = pres[int(self.rng.integers(len(pres)))]
            pre_params = {} if fixed_pre else pre.sample(self.rng)
            candidate = self.space.candidate(pre, est, pre_params, est.sample(self.rng), "tpe")
            if candidate.key() not in self.seen:
                return candidate
        left = untried(self.space, pres, est, self.seen, "tpe", fixed_pre)
        return left[int(self.rng.integers(len(left)))] if left else None

    def _pick_family(self) -> _Family | None:
        usable = [f for f in self.families.values() if not f.exhausted]
        alive = [f for f in usable if f.completed or f.failed < self.MAX_FAILURES] or usable
        if not alive:
            return None
        ranked = sorted(alive, key=lambda f: (-f.best, f.component.key))
        # a family the CV cannot tell from the leader gets tuned a little before the ranks
        # decide: ranked on its default alone, a family whose default fits the data poorly
        # is never tuned (extra trees on mlc_churn: CV 0.910 at its default, within two
        # standard errors of gradient boosting's 0.920; 0.920 with 70% of the features)
        leader = ranked[0]
        close = [
            f
            for f in ranked
            if f.completed
            and f.tuned < self.MIN_TUNED
            and f.best >= leader.best - self.NOISE_SE * leader.best_se
        ]
        if close:
            # the folds cannot tell them apart, so the cheapest (ties: the better ranked)
            # is tuned first, by the YAML's cost (a measured duration would make the order
            # depend on timing): more tries per second, and an expensive one no longer holds
            # an iteration budget (digits' 20: three tied CatBoost tries took 45 s of the 96
            # s of compute, next to extra trees at 1 s a try)
            return min(close, key=lambda f: f.component.cost)
        cheapest = min(f.cost() for f in ranked)
        weights = np.array(
            [
                self.DECAY**r / math.sqrt(max(f.cost(), 1e-3) / max(cheapest, 1e-3))
                for r, f in enumerate(ranked)
            ]
        )
        return ranked[int(self.rng.choice(len(ranked), p=weights / weights.sum()))]

    def _suggest(self, trial: Any, est: Component) -> Candidate:
        if est.scale_invariant:
            # per-feature scalers change nothing for it: trials spent on them would refit
            # one model under other names, and row-wise ones (Normalizer) only fit the
            # folds' noise (on hmda: best CV, worst test)
            pre, pre_params = self.default_pre, {}
        else:
            pres = self.space.preprocessors
            pre = pres[trial.suggest_categorical("preprocessor", list(range(len(pres))))]
            pre_params = suggest_params(trial, f"{pre.key}.", pre.params)
        est_params = suggest_params(trial, "", est.params)
        return self.space.candidate(pre, est, pre_params, est_params, "tpe")

    # --- tell ----------------------------------------------------------------------------
    def tell(self, result: IterationResult) -> None:
        candidate = result.candidate
        self.seen.add(candidate.key())
        family = self.families.get(candidate.estimator)
        if family is None:  # an ensemble, or a family no longer in the space (resume)
            return
        score = result.mean(self.metric)
        if score is None or not math.isfinite(score):
            family.failed += 1
        else:
            family.completed += 1
            if self.sign * score > family.best:
                family.best = self.sign * score
                # the folds' standard error: their (population) spread / sqrt(n - 1)
                n, sd = len(result.fold_scores[self.metric]), result.std(self.metric)
                family.best_se = (
                    sd / math.sqrt(n - 1) if n > 1 and sd and math.isfinite(sd) else 0.0
                )
        if result.duration > 0:
            family.seconds.append(result.duration)
        pending = self.trials.get(candidate.key())
        if pending:
            trial = pending.pop(0)
            if score is None or not math.isfinite(score):
                family.study.tell(trial, state=fail_state())
            else:
                family.study.tell(trial, self.sign * score)
        else:
            # no trial pending: a portfolio default, a resumed experiment's iteration, or
            # an untried point asked here when TPE only repeated itself; the last was
            # counted when asked, only a resumed one counts toward `tuned` now
            if candidate.origin != "portfolio" and candidate.key() not in self.asked:
                family.tuned += 1
            if score is not None and math.isfinite(score):
                self._add_known(family, candidate, self.sign * score)

    def _add_known(self, family: _Family, candidate: Candidate, value: float) -> None:
        """Teach the family's study a point it did not propose (a portfolio default, a
        resumed experiment's iteration, an untried point drawn when TPE repeated itself)."""
        import optuna

        params: dict[str, Any] = {}
        dists: dict[str, Any] = {}
        pres = [p.key for p in self.space.preprocessors]
        if candidate.preprocessor in pres and not family.component.scale_invariant:
            params["preprocessor"] = pres.index(candidate.preprocessor)
            dists["preprocessor"] = optuna.distributions.CategoricalDistribution(
                list(range(len(pres)))
            )
        for name, spec in family.component.params.items():
            if name not in candidate.estimator_params:
                continue
            value_in = as_internal(spec, candidate.estimator_params[name])
            if value_in is not None:
                params[name], dists[name] = value_in, distribution(spec)
        try:
            family.study.add_trial(
                optuna.trial.create_trial(params=params, distributions=dists, value=value)
            )
        except ValueError as ex:  # a default outside its own range: skip, never fatal
            log.debug("search: not teaching %s to TPE: %s", candidate.description, ex)
