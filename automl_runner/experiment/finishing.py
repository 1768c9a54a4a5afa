"""After the search: the ensembles, the refit of the best on all training rows, and
logging it as the experiment's model.

The ensembles are built in tasks like the iterations (as many at once as there are
slots), numbered on after the last search iteration, and recorded like them; one wins
only if it scores best (docs/ensembles.md).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from ..config.schema import AutoMLConfig
from ..engine.executor import Executor
from ..records import IterationResult, PreparedData
from ..tracking import schema
from ..tracking.control import POLL_SECONDS
from ..tracking.schema import ENSEMBLING
from ..tracking.store import Tracker
from ..worker.blending import Selection
from ..worker.ensemble import EnsemblePlan, numbered, plan_ensembles
from .record import Record
from .steering import Steering

log = logging.getLogger(__name__)


def build_ensembles(
    automl: AutoMLConfig,
    data: PreparedData,
    executor: Executor,
    record: Record,
    steering: Steering,
    slots: int,
    first_iteration: int,
) -> None:
    """The ensembles the search's results allow, built and recorded; Ctrl-C cancels them."""
    steering.progress(ENSEMBLING)
    plan = plan_ensembles(
        record.results,
        data,
        automl.primary_metric,
        voting=automl.enable_voting_ensemble,
        stacking=automl.enable_stack_ensemble,
        candidates=automl.ensemble_candidates,
    )
    if plan is None:
        return
    for r in _built(automl, plan, executor, steering, slots, first_iteration):
        record.add(r)


def _built(
    automl: AutoMLConfig,
    plan: EnsemblePlan,
    executor: Executor,
    steering: Steering,
    slots: int,
    first_iteration: int,
) -> list[IterationResult]:
    """The planned ensembles, built in tasks and numbered on from `first_iteration`."""
    pending = list(enumerate(plan.kinds))
    built: dict[int, IterationResult] = {}
    selection = Selection(automl.ensemble_size, automl.ensemble_bags)
    while pending or executor.in_flight:
        while pending and executor.in_flight < slots:
            k, kind = pending.pop(0)
            steering.launched(first_iteration + k)
            executor.submit_ensemble(
                first_iteration + k, kind, plan.members, automl.primary_metric, selection
            )
        steering.progress(ENSEMBLING)
        with steering.safe():
            done = executor.next_done(time.monotonic() + POLL_SECONDS)
        if done is not None:
            built[done.iteration] = done
        steering.interrupts.check()
        if steering.interrupts.requested:  # Ctrl-C: on to refitting the best so far
            pending.clear()
            for r in executor.cancel_all("cancelled: interrupted"):
                built[r.iteration] = r
    return numbered([built[n] for n in sorted(built)], first_iteration)


def refit(executor: Executor, best: IterationResult, steering: Steering) -> Any:
    """The best candidate refit on all training rows, in a task."""
    with steering.safe():
        return executor.refit(best.candidate)


def log_best(tracker: Tracker, model: Any, X: Any, register_as: str | None = None) -> str:
    """The refit model logged as the experiment's model with an input example of `X`'s
    first rows, and registered as `register_as` (tracking.register_model) with the alias
    champion; its URI."""
    uri = tracker.log_model(model, X.iloc[:5] if isinstance(X, pd.DataFrame) else X[:5])
    if register_as:
        tracker.register_model(register_as, uri)
        log.info("registered model: %s, alias %s", register_as, schema.CHAMPION)
    return uri
