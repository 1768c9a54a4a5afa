"""What an experiment has finished so far, and what it returns.

``Record`` keeps every finished iteration (with the best so far), logs each as a child
run and shows it as a console row; ``ExperimentResult`` is what ``run()`` returns.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .. import console
from ..errors import UserError
from ..metrics import best_first, better
from ..records import FAILED, MEMOUT, IterationResult, counts
from ..tracking.connection import client_for
from ..tracking.resume import Previous
from ..tracking.store import Tracker
from ..worker.ensemble import family_leaders

log = logging.getLogger(__name__)


class NoModelError(UserError):
    """No iteration completed, so there is no best model to refit."""


class Interrupted(KeyboardInterrupt):
    """The driver was told to end at once (Ctrl-C twice, SIGTERM; before the search,
    Ctrl-C once): its run, if it had one, ended KILLED."""

    def __init__(self, run_id: str | None, terminated: bool = False) -> None:
        self.run_id, self.terminated = run_id, terminated
        what = "terminated by SIGTERM" if terminated else "interrupted"
        where = (
            f"; run {run_id} ended KILLED (resume it with automl.resume={run_id})"
            if run_id
            else " before the search started; nothing was run"
        )
        super().__init__(what + where)


class TrackingLost(Exception):
    """The tracking server did not answer again within ``tracking.outage_minutes``: the
    experiment ended, and what the server did not take is in the journal."""

    def __init__(self, journal: str, uri: str, run_id: str | None) -> None:
        self.journal = journal
        super().__init__(
            f"tracking.uri={uri}: the tracking server did not answer within "
            f"tracking.outage_minutes; run {run_id} is kept in {journal}: write it to MLflow "
            f"with `automl-ctl replay {journal}` once the server is up"
        )


class Record:
    """Every finished iteration of the experiment: kept, logged, shown."""

    def __init__(self, tracker: Tracker, metric: str, keep_predictions: int) -> None:
        self.tracker, self.metric = tracker, metric
        # the out-of-fold predictions of this many best iterations (x 2) are kept for the
        # ensembles, and those of each family's best; the rest are dropped (memory)
        self.keep_predictions = keep_predictions
        self.results: list[IterationResult] = []
        self.run_ids: dict[int, str] = {}
        self.best: IterationResult | None = None

    @property
    def best_score(self) -> float | None:
        return None if self.best is None else self.best.mean(self.metric)

    @property
    def searched(self) -> int:
        """Search iterations finished (ensembles do not count toward automl.iterations)."""
        return sum(not r.is_ensemble for r in self.results)

    def counts(self) -> dict[str, int]:
        return counts(self.results)

    def replay(self, previous: Previous) -> None:
        """What earlier drivers of this run finished (a resumed experiment): kept, not
        logged again."""
        for r in sorted(previous.results, key=lambda r: r.iteration):
            self._keep(r)
        self.run_ids.update(previous.run_ids)

    def add(self, r: IterationResult) -> None:
        """A finished iteration or ensemble: kept; logged as a child run (and the best so
        far on the parent, stepped by the finished count) behind the loop; shown as a
        console row once its run is written, so a row on screen is a run in MLflow."""
        self._keep(r)
        self._drop_predictions()
        best = self.best_score
        logged = self.tracker.log_iteration(r, self.metric, best, step=len(self.results))
        logged.add_done_callback(functools.partial(self._logged, r, best))

    def _logged(self, r: IterationResult, best: float | None, written: Future[str]) -> None:
        # on the writer's thread, in the order the iterations were added; a write that
        # failed is raised to the driver by its next write or flush()
        if written.exception() is None:
            self.run_ids[r.iteration] = written.result()
        console.row(
            r.iteration, r.candidate.description, r.duration, r.mean(self.metric), r.status, best
        )
        if r.status == FAILED:
            log.debug("iteration %d failed:\n%s", r.iteration, r.error)
            if _ended_by_ray(r):
                console.reason(r.error or "")
        elif r.status == MEMOUT:
            console.reason(r.error or "")

    def flush(self) -> None:
        """Wait until every iteration added is in MLflow (``run_ids`` complete)."""
        self.tracker.flush()

    def _keep(self, r: IterationResult) -> None:
        score = r.mean(self.metric)
        if score is not None and better(self.metric, score, self.best_score):
            self.best = r
        self.results.append(r)

    def _drop_predictions(self) -> None:
        """Drop the out-of-fold predictions of all but what the ensembles may pick from
        (memory): the best 2 x `keep_predictions` iterations and the best of each family."""
        held = [r for r in self.results if r.oof is not None]
        if len(held) <= 2 * self.keep_predictions:
            return
        held.sort(key=best_first(self.metric))
        kept = {id(r) for r in held[: 2 * self.keep_predictions] + family_leaders(held)}
        for r in held:
            if id(r) not in kept:
                r.oof = None


def _ended_by_ray(r: IterationResult) -> bool:
    """Whether a FAILED iteration's error is one line, Ray's reason (memory, a lost node),
    rather than the traceback of an estimator that raised: FAILED alone would not tell
    the two apart in the table, and the traceback stays in MLflow and the debug log."""
    return bool(r.error) and "\n" not in (r.error or "").strip()


@dataclass
class ExperimentResult:
    """What one experiment left in MLflow, plus the refit best pipeline."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    status: str
    primary_metric: str
    results: list[IterationResult] = field(default_factory=list)
    run_ids: dict[int, str] = field(default_factory=dict)
    best: IterationResult | None = None
    model_uri: str | None = None
    model: Any = None
    # wall time of the search loop (first launch to last result), without refit and logging
    search_seconds: float | None = None
    # the explanation's summary (see tracking.explanations.summary), None if not explained
    explanation: dict[str, Any] | None = None
    # every metric of the task for the refit best model on the test set (none: no test set)
    test_scores: dict[str, float] = field(default_factory=dict)
    # the data guardrails that ALERTED, "name: detail"
    guardrail_alerts: list[str] = field(default_factory=list)

    @property
    def best_score(self) -> float | None:
        return None if self.best is None else self.best.mean(self.primary_metric)

    @property
    def best_run_id(self) -> str | None:
        return None if self.best is None else self.run_ids[self.best.iteration]

    def get_output(self) -> tuple[Any, Any]:
        """(best iteration's MLflow run, fitted scikit-learn pipeline), as in the seed."""
        from ..tracking.models import load_model

        if self.best is None:
            raise NoModelError(
                f"run {self.parent_run_id}: no iteration completed, so there is no best model"
            )
        run = client_for(self.tracking_uri).get_run(self.run_ids[self.best.iteration])
        model = self.model
        if model is None and self.model_uri:
            model = load_model(self.tracking_uri, self.model_uri)
        return run, model
