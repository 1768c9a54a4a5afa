"""The time budget (``automl.experiment_timeout_minutes``): the deadline, the reserve kept
for what comes after the search, and the measured cold start of a worker.

The budget counts from the command's start (data loading and Ray's start included) to
the best model logged; a resumed experiment's counts the time its earlier drivers spent.
The search ends `reserve` seconds before the deadline, so that the ensembles, the refit
and logging the model end by it too. docs/budgets.md has the whole rule.
"""

from __future__ import annotations

import math
import time

from ..config.schema import AutoMLConfig
from ..metrics import best_first
from ..records import COMPLETED, IterationResult, PreparedData
from ..worker.ensemble import pool

# what a time budget keeps for after the search, besides refitting: building the
# ensembles (a task each, on out-of-fold predictions: 0.1-0.5 s of work plus the task's
# start); starting new worker processes (cancelling the iterations in flight at the
# deadline kills theirs: a fresh worker took 2.5-2.9 s from launch to its first task on
# 2 busy CPUs, imports included); logging the model and the run's summary to MLflow;
# evaluating the best model (its test scores and 3-5 charts: 1.0-1.7 s for digits' 5)
ENSEMBLE_SECONDS = 2.0
RESTART_SECONDS = 3.0
LOG_SECONDS = 1.5
EVALUATION_SECONDS = 2.0
# the reserve is re-estimated at most this often (it ranks every result so far)
RESERVE_EVERY_SECONDS = 1.0


class Budget:
    """One experiment's time budget; with no experiment_timeout_minutes, no deadline."""

    def __init__(
        self,
        automl: AutoMLConfig,
        data: PreparedData,
        slots: int,
        started: float,
        spent_before: float = 0.0,
    ) -> None:
        self.automl, self.data, self.slots = automl, data, slots
        minutes = automl.experiment_timeout_minutes
        # monotonic; a resumed experiment's budget counts the time earlier drivers spent
        self.deadline = None if minutes is None else started + minutes * 60 - spent_before
        # seconds kept after the search for the ensembles, the refit and logging the model:
        # re-estimated as results come in, none before one completes (nothing to refit)
        self.reserve = 0.0
        self._reserve_at = -math.inf
        # the longest wait, launch to result, beyond the compute of the first iterations:
        # a cold worker's start (process, imports, data); cancelling at the deadline makes
        # the ensembles and the refit wait for new workers just as long
        self.cold_start = 0.0
        self._cold_seen = 0

    @property
    def timed(self) -> bool:
        return self.deadline is not None

    def search_ends(self) -> float:
        """When (monotonic) the search must stop: the deadline less the reserve."""
        return math.inf if self.deadline is None else self.deadline - self.reserve

    def searching(self) -> bool:
        return time.monotonic() < self.search_ends()

    def left(self) -> float:
        """Seconds to the deadline (inf without one)."""
        return math.inf if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def observe(
        self, r: IterationResult, launched_at: float | None, results: list[IterationResult]
    ) -> None:
        """A finished search iteration (already in `results`), launched at `launched_at`
        (epoch seconds): the cold start and the reserve learn from it."""
        if r.status == COMPLETED and launched_at is not None and self._cold_seen < self.slots:
            self._cold_seen += 1
            waited = time.time() - launched_at - r.duration
            self.cold_start = max(self.cold_start, waited)
        now = time.monotonic()
        if self.timed and (self.reserve == 0.0 or now - self._reserve_at >= RESERVE_EVERY_SECONDS):
            self.reserve = finishing_seconds(
                results, self.data, self.automl, self.slots, restart=self.cold_start
            )
            self._reserve_at = now


def finishing_seconds(
    results: list[IterationResult],
    data: PreparedData,
    automl: AutoMLConfig,
    slots: int,
    restart: float = RESTART_SECONDS,
) -> float:
    """Seconds the experiment needs after its search: the ensembles, the refit on all
    training rows of what may end up best, logging it and its evaluation. 0 before any
    iteration completes.

    An iteration's duration is its fits on the folds' training rows; one fit on all rows
    takes about duration x rows / (rows fitted over all folds), 1/4 of it with 5-fold
    CV. With ensembles on, the stacking ensemble refits every member of the pool
    (`automl.ensemble_candidates` iterations), `slots` at a time; without, the best
    iteration alone is refit. `restart`: seconds new workers take to start (the run's
    measured cold start; RESTART_SECONDS at least).
    """
    metric = automl.primary_metric
    done = [
        r
        for r in results
        if r.status == COMPLETED and not r.is_ensemble and r.mean(metric) is not None
    ]
    if not done:
        return 0.0
    members = [min(done, key=best_first(metric))]
    if automl.enable_voting_ensemble or automl.enable_stack_ensemble:
        members = pool(done, data, metric, automl.ensemble_candidates) or members
    fitted = sum(len(train) for train, _ in data.splits)
    share = len(data.y) / fitted if fitted else 1.0
    refits = [r.duration * share for r in members]
    refit = max(sum(refits) / max(1, slots), max(refits))
    ensembles = ENSEMBLE_SECONDS if len(members) > 1 else 0.0
    return refit + ensembles + max(restart, RESTART_SECONDS) + LOG_SECONDS + EVALUATION_SECONDS
