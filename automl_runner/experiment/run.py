"""One experiment, phase after phase (DESIGN.md's data flow):

    setup      validate, load the data, fix the splits, connect the compute, open the store
    loop       ask, submit, collect, tell, log, show  (until a budget or a stop ends it)
    finishing  the ensembles, the refit of the best, its model logged
    evaluate   the best model on the test set, and its charts
    explain    SHAP of the best model (started at the refit: the workers explain while
               the driver logs and evaluates)
    report     the parent run ended with its true status; the summary printed

``automl.resume`` continues an earlier parent run: what its iterations left is read
back and told to the search first.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from .. import console
from ..config.settings import describe, settings
from ..config.validate import validate
from ..search.ordering import TellOrder
from ..search.stopping import Stopper
from ..search.strategy import make_strategy, portfolio_size
from ..tracking import schema
from ..tracking.control import DriverChannel
from . import finishing, report
from .budget import Budget
from .evaluation import evaluate
from .explanation import explain, start_explaining
from .logs import console_and_debug_log
from .loop import SearchLoop
from .record import ExperimentResult, Interrupted, NoModelError, Record, TrackingLost
from .setup import Setup, set_up
from .steering import Interrupts, Steering

log = logging.getLogger(__name__)

# the folder, in the run's output folder, of what the tracking server did not take
JOURNAL_DIR = "tracking-journal"


def run_experiment(
    cfg: DictConfig,
    overrides: list[str] | None = None,
    serial: bool = False,
    tags: dict[str, str] | None = None,
    output_dir: str | None = None,
) -> ExperimentResult:
    """Run the experiment the composed config describes; see the module docstring.

    `tags` go onto the parent run (a sweep marks its jobs' runs with them); `serial` runs
    the iterations in this process instead of on Ray (debugging); `output_dir` (Hydra's
    run folder; default the working folder) holds the tracking journal if the tracking
    server goes away.
    """
    # experiment_timeout_minutes counts from here: loading the data and starting Ray are
    # part of the experiment, as are the ensembles, the refit and logging the model
    started = time.monotonic()
    typed = settings(cfg)
    validate(typed)
    interrupts = Interrupts()
    try:
        with (
            interrupts.installed(),
            console_and_debug_log(typed.automl),
            set_up(
                typed,
                describe(cfg),
                list(overrides or []),
                dict(tags or {}),
                serial,
                started,
                Path(output_dir or ".") / JOURNAL_DIR,
            ) as s,
        ):
            return _run(s, started, interrupts)
    except Interrupted:
        raise
    except KeyboardInterrupt as ex:
        # Ctrl-C or SIGTERM while loading the data or connecting: no search ran
        raise Interrupted(None, terminated=interrupts.by_sigterm(ex)) from ex


def search_loop(s: Setup, record: Record, steering: Steering, started: float) -> SearchLoop:
    """The search loop over this setup: its strategy, when it stops, the order results
    are told in, and the time budget; what earlier drivers finished is told first."""
    automl, metric = s.cfg.automl, s.cfg.automl.primary_metric
    strategy = make_strategy(automl.search, s.space, automl.seed, metric)
    stopper = Stopper(automl, portfolio=portfolio_size(automl.search, s.space))
    # with an iteration budget results are told in launch order (reproducible); with a
    # time budget as they arrive (docs/budgets.md)
    order = TellOrder(
        strategy, stopper, ordered=automl.experiment_timeout_minutes is None, slots=s.slots
    )
    record.replay(s.previous)
    for r in record.results:
        order.replay(r)
    budget = Budget(automl, s.data, s.slots, started, spent_before=s.previous.elapsed)
    return SearchLoop(
        automl,
        strategy,
        order,
        s.executor,
        record,
        budget,
        steering,
        s.slots,
        first_iteration=s.previous.next_iteration,
    )


def _run(s: Setup, started: float, interrupts: Interrupts) -> ExperimentResult:
    automl, metric = s.cfg.automl, s.cfg.automl.primary_metric
    record = Record(s.tracker, metric, keep_predictions=automl.ensemble_candidates)
    result = ExperimentResult(
        s.tracker.uri,
        s.tracker.experiment_id,
        s.parent_id,
        "RUNNING",
        metric,
        results=record.results,
        run_ids=record.run_ids,
        guardrail_alerts=s.alerts,
    )
    channel = DriverChannel(s.tracker.client, s.parent_id)
    steering = Steering(channel, s.executor, record, interrupts)
    loop = search_loop(s, record, steering, started)
    summary = s.summary
    log.info(
        "experiment %s: %s, %d rows x %d features, %s, %d at a time",
        s.tracker.experiment_name,
        summary["name"],
        summary["rows"],
        summary["features"],
        f"{automl.iterations} iterations"
        if automl.iterations is not None
        else f"{automl.experiment_timeout_minutes:g} minutes",
        s.slots,
    )
    console.header(metric)
    status = "FAILED"
    # the end waits for a tracking server that went away, unless the driver must exit now
    wait_for_server = True
    try:
        # what the budget counts before this point: earlier drivers', and this one's setup
        channel.start(
            automl.iterations,
            automl.experiment_timeout_minutes,
            s.previous.elapsed + time.monotonic() - started,
        )
        with steering.interrupts.searching():
            search_start = time.monotonic()
            loop.run()
            stopped = loop.order.stopper.reason
            if stopped is not None:
                log.info("search stopped after %d iterations: %s", loop.number, stopped)
                s.tracker.set_tags({schema.STOPPED_EARLY: stopped})
            if not steering.interrupted:
                finishing.build_ensembles(
                    automl, s.data, s.executor, record, steering, s.slots, loop.number
                )
            steering.progress(schema.REFITTING)
            result.search_seconds = time.monotonic() - search_start
            record.flush()
            best = record.best
            if best is None:
                if steering.interrupted:
                    raise KeyboardInterrupt
                raise NoModelError(
                    f"no iteration completed ({len(result.results)} failed or timed out); "
                    f"see their tracebacks in MLflow run {s.parent_id}"
                )
            result.model = finishing.refit(s.executor, best, steering)
            # the workers explain the model while the driver logs and evaluates it
            explaining = (
                start_explaining(s.cfg.explain, s.executor, result.model)
                if automl.model_explainability
                else None
            )
            try:
                result.model_uri = finishing.log_best(
                    s.tracker, result.model, s.dataset.X, s.cfg.tracking.register_model
                )
                steering.interrupts.check()
                result.test_scores = evaluate(
                    s.tracker,
                    result.model,
                    s.dataset,
                    s.data,
                    best,
                    record.run_ids[best.iteration],
                    record.results,
                )
                if explaining is not None:
                    result.explanation = explain(
                        explaining, s.tracker.client, s.parent_id, waiting=steering.safe
                    )
            finally:
                if explaining is not None:
                    explaining.cancel()  # Ctrl-C or a failure beside it: no task left behind
            # Ctrl-C once: the best so far is logged, and the run says it was cut short
            status = "KILLED" if steering.interrupts.requested else "FINISHED"
    except KeyboardInterrupt as ex:
        status = "KILLED"
        wait_for_server = False
        for r in s.executor.cancel_all("interrupted"):
            record.add(r)
        raise Interrupted(s.parent_id, terminated=steering.interrupts.by_sigterm(ex)) from ex
    finally:
        result.status = status
        result.best = record.best
        try:
            record.flush()
            channel.close(status)
        finally:
            report.finish(s.tracker, result, s.previous.elapsed + time.monotonic() - started)
            settled = s.tracker.settle(wait_for_server)
            _resolve_ids(s, result)
            if not settled:
                log.warning(
                    "some of the run is not in MLflow yet: kept in %s; "
                    "write it with: automl-ctl replay %s",
                    s.tracker.journal.parent,
                    s.tracker.journal.parent,
                )
    if not settled:
        raise TrackingLost(str(s.tracker.journal.parent), s.tracker.uri, s.parent_id)
    report.print_summary(result, s.cfg.tracking)
    return result


def _resolve_ids(s: Setup, result: ExperimentResult) -> None:
    """Real ids for the runs and the model created while the tracking server was away."""
    for n, run_id in result.run_ids.items():
        result.run_ids[n] = s.tracker.resolve(run_id)
    if result.model_uri:
        result.model_uri = s.tracker.resolve(result.model_uri)
