"""One experiment, in the order of DESIGN.md's data flow.

validate -> load data -> connect compute -> loop(ask, submit, next_done, tell, log, row)
-> refit best -> log model -> summary.

The loop is steerable (control.py): while it waits it reads requests from the parent run
(stop, cancel iteration n) and writes its progress there; Ctrl-C once is a stop, twice
exits at once. ``automl.resume`` continues an earlier parent run (resume.py).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from . import console
from . import resume as resuming
from .compute import connect
from .control import CANCEL, POLL_SECONDS, STOP, DriverChannel, Interrupts
from .data import Dataset, experiment_name, load
from .ensemble import (
    EnsemblePlan,
    Selection,
    family_leaders,
    numbered,
    plan_ensembles,
    pool,
)
from .errors import ConfigError, UserError
from .executor import RayExecutor, SerialExecutor
from .metrics import better
from .search import make_strategy
from .space import SearchSpace
from .tracking import Tracker, check_reachable, store_uri
from .validate import validate
from .worker import (
    CANCELLED,
    COMPLETED,
    FAILED,
    TIMEOUT,
    IterationResult,
    PreparedData,
    best_first,
)

log = logging.getLogger(__name__)


class NoModelError(UserError):
    """No iteration completed, so there is no best model to refit."""


class Interrupted(KeyboardInterrupt):
    """The driver was told to end at once (Ctrl-C twice, SIGTERM); its run ended KILLED."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        where = f"; run {run_id} ended KILLED (resume it with automl.resume={run_id})"
        super().__init__(f"interrupted{where if run_id else ''}")


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
    # the explanation's summary (see explanations.summary), None if not explained
    explanation: dict[str, Any] | None = None

    @property
    def best_score(self) -> float | None:
        return None if self.best is None else self.best.mean(self.primary_metric)

    @property
    def best_run_id(self) -> str | None:
        return None if self.best is None else self.run_ids[self.best.iteration]

    def get_output(self) -> tuple[Any, Any]:
        """(best iteration's MLflow run, fitted scikit-learn pipeline), as in the seed."""
        from mlflow import MlflowClient

        if self.best is None:
            raise NoModelError(
                f"run {self.parent_run_id}: no iteration completed, so there is no best model"
            )
        run = MlflowClient(self.tracking_uri).get_run(self.run_ids[self.best.iteration])
        model = self.model
        if model is None and self.model_uri:
            import mlflow.sklearn

            model = mlflow.sklearn.load_model(self.model_uri)
        return run, model


# data from this size on is put into the object store before the MLflow store opens
OPEN_TRACKER_EARLY_BELOW_BYTES = 256 * 2**20


def prepare(ds: Dataset, automl: DictConfig) -> PreparedData:
    """Fix the validation scheme once (seeded), so every candidate sees the same splits."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    classification = automl.task == "classification"
    n = ds.n_rows
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    if ds.X_valid is None:
        if automl.n_cross_validations is not None:
            k = automl.n_cross_validations
            cv = (StratifiedKFold if classification else KFold)(
                k, shuffle=True, random_state=automl.seed
            )
            splits = list(cv.split(np.zeros(n), ds.y))
        else:
            idx = np.arange(n)
            train, valid = train_test_split(
                idx,
                test_size=automl.validation_size,
                random_state=automl.seed,
                stratify=ds.y if classification else None,
            )
            splits = [(np.sort(train), np.sort(valid))]
    classes = None
    if classification:
        both = ds.y if ds.y_valid is None else np.concatenate([ds.y, ds.y_valid])
        classes = np.unique(both)
    return PreparedData(
        X=ds.X,
        y=ds.y,
        X_valid=ds.X_valid,
        y_valid=ds.y_valid,
        sample_weight=ds.sample_weight,
        splits=splits,
        task=automl.task,
        primary_metric=automl.primary_metric,
        classes=classes,
        y_range=0.0 if classification else float(np.ptp(ds.y)),
        preprocess=automl.preprocess,
        numeric=ds.numeric,
        categorical=ds.categorical,
        seed=automl.seed,
        impute=ds.has_missing(),
        dates=ds.dates,
    )


@contextmanager
def _logging(automl: DictConfig) -> Iterator[None]:
    """Console level from automl.verbosity, plus a DEBUG file for automl.debug_log.

    Restores every logger and handler it touched, so experiments run one after another
    (a sweep, a notebook) do not stack handlers.
    """
    level = getattr(logging, str(automl.verbosity).upper())
    pkg = logging.getLogger("automl_runner")
    saved_level, saved_propagate = pkg.level, pkg.propagate
    added: list[logging.Handler] = []
    relevelled: list[logging.Handler] = []
    if not logging.getLogger().handlers and not pkg.handlers:
        # a notebook or plain script: show the table on stdout
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        added.append(handler)
        pkg.propagate = False
    pkg.setLevel(level)
    if automl.debug_log:
        # the logger lets DEBUG through to the file; console handlers keep `verbosity`
        for h in logging.getLogger().handlers + pkg.handlers + added:
            if h.level == logging.NOTSET:
                h.setLevel(level)
                relevelled.append(h)
        debug = logging.FileHandler(automl.debug_log)
        debug.setLevel(logging.DEBUG)
        debug.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        added.append(debug)
        pkg.setLevel(logging.DEBUG)
    for h in added:
        pkg.addHandler(h)
    try:
        yield
    finally:
        for h in added:
            pkg.removeHandler(h)
            h.close()
        for h in relevelled:
            h.setLevel(logging.NOTSET)
        pkg.setLevel(saved_level)
        pkg.propagate = saved_propagate


def _open_tracker(cfg: DictConfig, name: str) -> Tracker:
    try:
        return Tracker(cfg.tracking, name)
    except UserError:
        raise
    except Exception as ex:
        raise _store_error(cfg, ex) from ex


def _check_server(cfg: DictConfig) -> None:
    """A tracking server nothing answers at fails the run at once, before the data loads
    or Ray starts."""
    try:
        check_reachable(store_uri(cfg.tracking)[0])
    except ConnectionError as ex:
        raise _store_error(cfg, ex) from ex


def _store_error(cfg: DictConfig, ex: Exception) -> ConfigError:
    key = "tracking.uri" if cfg.tracking.kind == "server" else "tracking.store_dir"
    value = cfg.tracking.uri if cfg.tracking.kind == "server" else cfg.tracking.store_dir
    first = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
    return ConfigError(key, value, f"cannot open the MLflow store: {first[:300]}")


def run_experiment(
    cfg: DictConfig,
    overrides: list[str] | None = None,
    serial: bool = False,
    tags: dict[str, str] | None = None,
) -> ExperimentResult:
    """Run the experiment the composed config describes; see the module docstring.

    `tags` go onto the parent run (a sweep marks its jobs' runs with them).
    """
    # experiment_timeout_minutes counts from here: loading the data and starting Ray are
    # part of the experiment, as are the ensembles, the refit and logging the model
    started = time.monotonic()
    validate(cfg)
    with _logging(cfg.automl):
        return _prepare_and_run(cfg, list(overrides or []), serial, dict(tags or {}), started)


def _prepare_and_run(
    cfg: DictConfig, overrides: list[str], serial: bool, tags: dict[str, str], started: float
) -> ExperimentResult:
    automl = cfg.automl
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    _check_server(cfg)
    if automl.resume:
        # a resume that cannot be is refused before the data loads or Ray starts
        _check_resume(cfg)

    dataset = load(cfg.data, automl)
    space = SearchSpace.from_config(cfg, sparse_input=dataset.is_sparse)
    prepared = prepare(dataset, automl)
    name = cfg.tracking.experiment_name or f"automl-{experiment_name(cfg.data)}"

    if serial:
        tracker = _open_tracker(cfg, name)
        return _run(
            cfg,
            overrides,
            tags,
            dataset,
            space,
            prepared,
            tracker,
            SerialExecutor(prepared),
            1,
            started,
        )
    # the MLflow store opens (SQLite migrations, experiment lookup) while Ray starts;
    # with large data only once the data is in the object store: MLflow and its store
    # (~0.1 GB) should not add to the moment of the put, when the data exists twice
    with ThreadPoolExecutor(1) as pool:
        early = dataset.nbytes < OPEN_TRACKER_EARLY_BELOW_BYTES
        pending_tracker = pool.submit(_open_tracker, cfg, name) if early else None
        with connect(cfg.compute) as cluster:
            if pending_tracker is not None:
                # a store that cannot open fails the run before the data is put
                pending_tracker.result()
            slots = cluster.slots(cfg.compute.cpus_per_iteration)
            concurrency = automl.max_concurrent_iterations or slots
            if concurrency > slots:
                log.warning(
                    "automl.max_concurrent_iterations=%d but the cluster (%d node(s), %g CPUs, "
                    "%g per iteration) holds %d at a time; running %d at once",
                    concurrency,
                    cluster.nodes,
                    cluster.cpus,
                    cfg.compute.cpus_per_iteration,
                    slots,
                    slots,
                )
                concurrency = slots
            executor = RayExecutor(
                prepared,
                timeout_s=automl.iteration_timeout_minutes * 60,
                num_cpus=cfg.compute.cpus_per_iteration,
                memory_mb=cfg.compute.memory_mb_per_iteration,
                max_retries=cfg.compute.max_retries,
            )
            # from here on the driver reads the object-store copy (zero-copy for numeric
            # arrays) and lets its own copy go: one copy of the data in memory, not two
            prepared = executor.shared_data()
            dataset.X, dataset.y, dataset.X_valid = prepared.X, prepared.y, prepared.X_valid
            tracker = pending_tracker.result() if pending_tracker else _open_tracker(cfg, name)
            return _run(
                cfg,
                overrides,
                tags,
                dataset,
                space,
                prepared,
                tracker,
                executor,
                concurrency,
                started,
            )


def _check_resume(cfg: DictConfig) -> None:
    from mlflow import MlflowClient

    uri = store_uri(cfg.tracking)[0]
    if cfg.tracking.kind == "local" and not (Path(uri.removeprefix("sqlite:///")).is_file()):
        # MlflowClient would create an empty store there
        raise ConfigError("automl.resume", cfg.automl.resume, f"no MLflow store at {uri}")
    client = MlflowClient(uri)
    resuming.open_run(client, cfg.automl.resume, uri)
    resuming.check_same_search(client, cfg.automl.resume, cfg)


def _attach(
    tracker: Tracker, cfg: DictConfig, overrides: list[str], summary: dict
) -> resuming.Previous:
    """Continue the parent run `automl.resume` names; what its iterations left, read back."""
    run_id = cfg.automl.resume
    run = resuming.open_run(tracker.client, run_id, tracker.uri)
    previous = resuming.read_previous(tracker.client, run)
    tracker.attach_parent(run_id)
    if not previous.has_data_summary:
        tracker.log_data_summary(summary)
    if run.data.tags.get("automl.state") != "SUBMITTED":
        resumes = int(run.data.tags.get("automl.resumes", "0")) + 1
        tracker.client.set_tag(run_id, "automl.resumes", str(resumes))
        tracker.client.log_text(
            run_id, "\n".join(overrides) + "\n", f"config/overrides-resume-{resumes}.txt"
        )
        log.info(
            "resuming run %s: %d finished iteration(s) read back from MLflow, "
            "%d to go, numbered from %d",
            run_id,
            len(previous.results),
            max(0, cfg.automl.iterations - len(previous.results)),
            previous.next_iteration,
        )
    return previous


def _counts(results: list[IterationResult]) -> dict[str, int]:
    """Search iterations by status, and the ensemble iterations (which do not count
    toward automl.iterations) apart."""
    search = [r for r in results if not r.candidate.members]
    return {
        "completed": sum(r.status == COMPLETED for r in search),
        "failed": sum(r.status == FAILED for r in search),
        "timed_out": sum(r.status == TIMEOUT for r in search),
        "cancelled": sum(r.status == CANCELLED for r in search),
        "ensembles": len(results) - len(search),
    }


def _run(
    cfg: DictConfig,
    overrides: list[str],
    tags: dict[str, str],
    dataset: Dataset,
    space: SearchSpace,
    prepared: PreparedData,
    tracker: Tracker,
    executor: Any,
    concurrency: int,
    started: float,
) -> ExperimentResult:
    automl = cfg.automl
    metric = automl.primary_metric
    summary = dataset.summary(automl.task)
    if automl.resume:
        previous = _attach(tracker, cfg, overrides, summary)
        parent_id = str(automl.resume)
    else:
        previous = resuming.Previous()
        parent_id = tracker.start_parent(
            run_name=run_name(tracker.experiment_name),
            config=config_dict(cfg),
            config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
            overrides=overrides,
            data_summary=summary,
            primary_metric=metric,
            tags=tags,
        )
    result = ExperimentResult(tracker.uri, tracker.experiment_id, parent_id, "RUNNING", metric)
    search = make_strategy(automl.search, space, automl.seed, metric)
    stopper = _Stopper(automl, metric, search, portfolio=_portfolio_size(automl, space))
    # a resumed experiment: what earlier drivers finished, told in their order
    for r in sorted(previous.results, key=lambda r: r.iteration):
        stopper.launched.append(r.iteration)
        stopper.tell(r)
        score = r.mean(metric)
        if score is not None and better(metric, score, result.best_score):
            result.best = r
        result.results.append(r)
    result.run_ids.update(previous.run_ids)
    log.info(
        "experiment %s: %s, %d rows x %d features, %d iterations, %d at a time",
        tracker.experiment_name,
        summary["name"],
        summary["rows"],
        summary["features"],
        automl.iterations,
        concurrency,
    )
    console.header(metric)

    def record(r: IterationResult) -> None:
        score = r.mean(metric)
        if score is not None and better(metric, score, result.best_score):
            result.best = r
        result.results.append(r)
        _keep_best_predictions(result, automl.ensemble_candidates)
        result.run_ids[r.iteration] = tracker.log_iteration(r, metric)
        if result.best_score is not None:
            # step = finished count, so the latest value is the best so far
            tracker.log_best(metric, result.best_score, step=len(result.results))
        console.row(
            r.iteration, r.candidate.description, r.duration, score, r.status, result.best_score
        )
        if r.status == FAILED:
            log.debug("iteration %d failed:\n%s", r.iteration, r.error)

    deadline = None
    if automl.experiment_timeout_minutes is not None:
        # a resumed experiment's budget counts the time its earlier drivers spent
        deadline = started + automl.experiment_timeout_minutes * 60 - previous.elapsed
    # With an iteration budget the search is reproducible: the candidate launched k-th is
    # asked after exactly the first k-lag+1 launched have been told, in launch order,
    # whatever finished first. With a time budget nothing is reproducible anyway,
    # so every result is told as it arrives and no slot waits.
    ordered = deadline is None
    lag = tell_lag(concurrency)
    finished: dict[int, IterationResult] = {}
    # the search ends this many seconds before the deadline, so that what follows it
    # (ensembles, refit, logging the model) ends by the deadline too; re-estimated as
    # results come in, and not kept before one completes (there would be nothing to refit)
    reserve, reserve_at = 0.0, -math.inf
    # the longest wait, launch to result, beyond the compute of the first iterations: a
    # cold worker's start (process, imports, data); cancelling at the deadline makes the
    # ensembles and the refit wait for new workers just as long
    cold_start, cold_seen = 0.0, 0

    def search_deadline() -> float:
        return math.inf if deadline is None else deadline - reserve

    def done_with(r: IterationResult) -> None:
        """Log a finished search iteration and feed it to the search."""
        nonlocal reserve, reserve_at, cold_start, cold_seen
        record(r)
        if r.status == COMPLETED and r.iteration in launched_at and cold_seen < concurrency:
            cold_seen += 1
            waited = time.time() - launched_at[r.iteration] - r.duration
            cold_start = max(cold_start, waited)
        # at most once a second: it ranks every result so far
        if deadline is not None and (reserve == 0.0 or time.monotonic() - reserve_at >= 1.0):
            reserve = finishing_seconds(
                result.results, prepared, automl, concurrency, restart=cold_start
            )
            reserve_at = time.monotonic()
        if ordered:
            finished[r.iteration] = r
        else:
            stopper.tell(r)

    def to_go() -> int:
        searched = sum(not r.candidate.members for r in result.results)
        return automl.iterations - searched - executor.in_flight

    channel = DriverChannel(tracker.client, parent_id)
    interrupts = Interrupts()
    # why no new iteration starts: a stop request or Ctrl-C
    stopping: str | None = None
    number = previous.next_iteration
    launched_at: dict[int, float] = {}
    # iterations a cancel request named before they started
    cancel_at_start: set[int] = set()

    def cancel(n: int) -> str:
        """Act on a request to cancel iteration n; the answer written back to the run."""
        r = executor.cancel(n, "cancelled on request")
        if r is not None:
            done_with(r)
            return "cancelled"
        done = {x.iteration: x.status for x in result.results}
        if n in done:
            return f"ignored: iteration {n} already finished ({done[n]})"
        if n in executor.running():
            return f"ignored: iteration {n} finished before the cancel arrived"
        if number <= n < number + to_go():
            cancel_at_start.add(n)
            return "cancelled before it starts"
        return f"ignored: this experiment runs no iteration {n}"

    def steer() -> None:
        """Ctrl-C and the requests on the parent run (read at most once a second)."""
        nonlocal stopping
        interrupts.check()
        if interrupts.requested and stopping != "interrupted":
            stopping = "interrupted"
            log.warning(
                "Ctrl-C: no new iterations; cancelling %d running, then refitting the best "
                "so far (Ctrl-C again to exit at once)",
                executor.in_flight,
            )
        requests = channel.requests()
        if requests.stop:
            if not stopping:
                stopping = "stop requested"
                log.warning(
                    "stop requested: no new iterations; cancelling %d running, then "
                    "refitting the best so far",
                    executor.in_flight,
                )
            channel.answer(STOP, "stopping")
        for n in requests.cancel:
            channel.answer(f"{CANCEL}{n}", cancel(n))

    def progress(state: str | None = None) -> None:
        running = executor.running()
        channel.progress(
            state or ("STOPPING" if stopping else "RUNNING"),
            {n: (c.description, launched_at.get(n, 0.0)) for n, c in running.items()},
            _counts(result.results),
            len(result.results),
            None
            if result.best is None
            else (result.best.iteration, result.best.candidate.description),
        )

    status = "FAILED"
    try:
        # what the budget counts before this point: earlier drivers', and this one's setup
        channel.start(
            automl.iterations,
            automl.experiment_timeout_minutes,
            previous.elapsed + time.monotonic() - started,
        )
        with interrupts.installed():
            search_start = time.monotonic()
            while True:
                steer()
                asked = False
                while (
                    concurrency - executor.in_flight > 0
                    and to_go() > 0
                    and not stopping
                    and stopper.reason is None
                    and time.monotonic() < search_deadline()
                ):
                    if ordered:
                        need = max(0, len(stopper.launched) - lag + 1)
                        stopper.tell_in_order(finished, need)
                        if stopper.told < need or stopper.reason is not None:
                            break
                        wanted = 1
                    else:
                        wanted = min(concurrency - executor.in_flight, to_go())
                    batch = search.ask(wanted)
                    if len(batch) < wanted:
                        stopper.reason = "every candidate in the search space has been tried"
                    for candidate in batch:
                        stopper.launched.append(number)
                        asked = True
                        if number in cancel_at_start:
                            why = "cancelled on request before it started"
                            done_with(
                                IterationResult(number, candidate, CANCELLED, error=why, log=why)
                            )
                        else:
                            executor.submit(number, candidate)
                            launched_at[number] = time.time()
                        number += 1
                if stopping and executor.in_flight:
                    for r in executor.cancel_all(f"cancelled: {stopping}"):
                        done_with(r)
                progress()
                if executor.in_flight == 0:
                    if asked:  # every candidate asked was cancelled before it started
                        continue
                    break
                wait_until = time.monotonic() + POLL_SECONDS
                with interrupts.safe():
                    done = executor.next_done(min(search_deadline(), wait_until))
                if done is not None:
                    done_with(done)
                elif deadline is not None and time.monotonic() >= search_deadline():
                    # experiment_timeout_minutes: stop launching, cancel in flight
                    log.info(
                        "experiment_timeout_minutes: %.1f s left, kept for the ensembles, "
                        "the refit and logging the model; cancelling %d running iteration(s)",
                        max(0.0, deadline - time.monotonic()),
                        executor.in_flight,
                    )
                    for r in executor.cancel_all("experiment_timeout_minutes reached"):
                        done_with(r)
                    break
            if ordered:
                stopper.tell_in_order(finished, len(stopper.launched))
            if stopper.reason is not None:
                log.info("search stopped after %d iterations: %s", number, stopper.reason)
                tracker.client.set_tag(parent_id, "automl.stopped_early", stopper.reason)
            if stopping != "interrupted":
                progress("ENSEMBLING")
                plan = plan_ensembles(
                    result.results,
                    prepared,
                    metric,
                    voting=automl.enable_voting_ensemble,
                    stacking=automl.enable_stack_ensemble,
                    candidates=automl.ensemble_candidates,
                )
                for r in _build_ensembles(
                    executor, plan, number, concurrency, automl, interrupts, progress, launched_at
                ):
                    record(r)
            progress("REFITTING")
            result.search_seconds = time.monotonic() - search_start
            if result.best is None:
                if stopping == "interrupted":
                    raise KeyboardInterrupt
                raise NoModelError(
                    f"no iteration completed ({len(result.results)} failed or timed out); "
                    f"see their tracebacks in MLflow run {parent_id}"
                )
            with interrupts.safe():
                result.model = executor.refit(result.best.candidate)
            result.model_uri = tracker.log_model(result.model, _input_example(dataset.X))
            interrupts.check()
            if automl.model_explainability:
                result.explanation = _explain(
                    cfg, executor, tracker.client, parent_id, result.model
                )
            # Ctrl-C once: the best so far is logged, and the run says it was cut short
            status = "KILLED" if interrupts.requested else "FINISHED"
    except KeyboardInterrupt as ex:
        status = "KILLED"
        for r in executor.cancel_all("interrupted"):
            record(r)
        raise Interrupted(parent_id) from ex
    finally:
        result.status = status
        try:
            channel.close(status)
        finally:
            _finish(tracker, result, previous.elapsed + time.monotonic() - started)
    _print_summary(result, cfg)
    return result


def _build_ensembles(
    executor: Any,
    plan: EnsemblePlan | None,
    first_iteration: int,
    concurrency: int,
    automl: DictConfig,
    interrupts: Interrupts,
    progress: Callable[[str], None],
    launched_at: dict[int, float],
) -> list[IterationResult]:
    """The planned ensembles, built in tasks like the iterations (as many at once as
    there are slots) and numbered on from `first_iteration`; Ctrl-C cancels them.
    `launched_at` gets their start times, for the status of what is running."""
    pending = list(enumerate(plan.kinds if plan else []))
    built: dict[int, IterationResult] = {}
    while pending or executor.in_flight:
        while pending and executor.in_flight < concurrency:
            k, kind = pending.pop(0)
            assert plan is not None
            launched_at[first_iteration + k] = time.time()
            executor.submit_ensemble(
                first_iteration + k,
                kind,
                plan.members,
                automl.primary_metric,
                Selection(automl.ensemble_size, automl.ensemble_bags),
            )
        progress("ENSEMBLING")
        with interrupts.safe():
            done = executor.next_done(time.monotonic() + POLL_SECONDS)
        if done is not None:
            built[done.iteration] = done
        interrupts.check()
        if interrupts.requested:  # Ctrl-C: on to refitting the best so far
            pending.clear()
            for r in executor.cancel_all("cancelled: interrupted"):
                built[r.iteration] = r
    return numbered([built[n] for n in sorted(built)], first_iteration)


def run_name(experiment_name: str) -> str:
    return f"{experiment_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as a plain dict, as the parent run's params log it."""
    return {str(k): v for k, v in OmegaConf.to_container(cfg, resolve=True).items()}  # type: ignore[union-attr]


class _Stopper:
    """Tells results to the search and decides early stopping and the exit score."""

    def __init__(self, automl: DictConfig, metric: str, search: Any, portfolio: int) -> None:
        self.automl, self.metric, self.search = automl, metric, search
        self.portfolio = portfolio
        # iteration numbers in launch order; results are told in this order
        self.launched: list[int] = []
        self.told = 0
        self.best: float | None = None
        self.since_best = 0
        self.reason: str | None = None

    def tell(self, r: IterationResult) -> None:
        self.search.tell(r)
        self.told += 1
        score = r.mean(self.metric)
        if score is not None and better(self.metric, score, self.best):
            self.best, self.since_best = score, 0
        else:
            self.since_best += 1
        a = self.automl
        exit_score = a.experiment_exit_score
        if (
            exit_score is not None
            and self.best is not None
            and not better(self.metric, float(exit_score), self.best)
        ):
            self.reason = f"automl.experiment_exit_score={exit_score} reached ({self.best:.4f})"
        elif (
            a.enable_early_stopping
            and self.told >= max(self.portfolio, a.early_stopping_patience)
            and self.since_best >= a.early_stopping_patience
        ):
            self.reason = (
                f"early stopping: no improvement in {self.since_best} iterations "
                f"(automl.early_stopping_patience={a.early_stopping_patience})"
            )

    def tell_in_order(self, finished: dict[int, IterationResult], upto: int) -> None:
        """Tell the launched iterations told .. upto-1, as far as they have finished."""
        while self.told < upto and self.launched[self.told] in finished:
            self.tell(finished.pop(self.launched[self.told]))


def _portfolio_size(automl: DictConfig, space: SearchSpace) -> int:
    return len(space.estimators) if automl.search == "tpe" else 0


# what a time budget keeps for after the search, besides refitting: building the
# ensembles (a task each, on out-of-fold predictions: 0.1-0.5 s of work plus the task's
# start); starting new worker processes (cancelling the iterations in flight at the
# deadline kills theirs); logging the model and the run's summary to MLflow
ENSEMBLE_SECONDS = 2.0
RESTART_SECONDS = 1.5
LOG_SECONDS = 1.5


def finishing_seconds(
    results: list[IterationResult],
    data: PreparedData,
    automl: DictConfig,
    slots: int,
    restart: float = RESTART_SECONDS,
) -> float:
    """Seconds the experiment needs after its search: the ensembles, the refit on all
    training rows of what may end up best, and logging it. 0 before any iteration
    completes.

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
        if r.status == COMPLETED and not r.candidate.members and r.mean(metric) is not None
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
    return refit + ensembles + max(restart, RESTART_SECONDS) + LOG_SECONDS


def tell_lag(concurrency: int) -> int:
    """How many launches a told result may lag behind (iteration budget): with one slot
    none; with several, a few rounds of them, so that one long iteration does not leave
    the other slots idle."""
    return 1 if concurrency == 1 else 3 * concurrency


def _keep_best_predictions(result: ExperimentResult, keep: int) -> None:
    """Drop the out-of-fold predictions of all but what the ensembles may pick from
    (memory): the best 2 x `keep` iterations and the best of each family."""
    held = [r for r in result.results if r.oof is not None]
    if len(held) <= 2 * keep:
        return
    held.sort(key=best_first(result.primary_metric))
    kept = {id(r) for r in held[: 2 * keep] + family_leaders(held)}
    for r in held:
        if id(r) not in kept:
            r.oof = None


def _explainable(model: Any) -> tuple[Any, str | None]:
    """(the pipeline to explain, a note): an ensemble is explained by its leading member."""
    members = getattr(model, "estimators_", None)
    if members is None or not hasattr(model, "named_estimators_"):
        return model, None
    weights = getattr(model, "weights", None) or [1.0] * len(members)
    lead = int(np.argmax(weights))  # members are listed best first: ties go to the best
    name = list(model.named_estimators_)[lead]
    pipeline = getattr(members[lead], "estimator", members[lead])
    return pipeline, (
        f"the best model is a {type(model).__name__} of {len(members)} pipelines; "
        f"explained: its leading member {name}"
    )


def _explain_settings(cfg: DictConfig) -> dict[str, Any]:
    keys = (
        "explainer",
        "rows",
        "background_size",
        "kernel_kmeans",
        "kernel_rows",
        "kernel_nsamples",
    )
    return {k: cfg.explain[k] for k in keys}


def _explain(
    cfg: DictConfig, executor: Any, client: Any, run_id: str, model: Any
) -> dict[str, Any] | None:
    """Explain the best model; a failure or timeout is a note on the run, never fatal."""
    import traceback

    from .explanations import log_explanation, log_failure

    target, note = _explainable(model)
    try:
        explanation, rows = executor.explain(
            target, _explain_settings(cfg), cfg.explain.timeout_minutes * 60
        )
        if note:
            explanation.notes.append(note)
            log.info(note)
        info = log_explanation(client, run_id, explanation, rows)
    except TimeoutError as ex:
        log.warning("explanation skipped: %s", ex)
        log_failure(client, run_id, "timeout", str(ex))
        return None
    except Exception as ex:
        log.warning(
            "explanation failed (the best model is logged): %s",
            str(ex).splitlines()[0] if str(ex) else ex,
        )
        log_failure(client, run_id, "failed", traceback.format_exc())
        return None
    console.log.info(
        "explanation:     %s explainer, %d rows, %.1f s; top features: %s",
        info["explainer"],
        info["rows"],
        info["seconds"],
        ", ".join(info["overall_imp"][:5]),
    )
    return info


def explain_finished_run(cfg: DictConfig, run_id: str) -> dict[str, Any] | None:
    """explain.only=RUN_ID: explain an experiment's best model again, without searching.

    The data comes from the run's own logged config; explain and compute settings from `cfg`.
    """
    import tempfile

    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = store_uri(cfg.tracking)[0]
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except Exception as ex:
        raise ConfigError("explain.only", run_id, f"no such run in {uri}") from ex
    run_id = run.data.tags.get("mlflow.parentRunId", run_id)
    run = client.get_run(run_id)
    model_uri = run.data.tags.get("automl.best_model_uri")
    if not model_uri:
        raise ConfigError("explain.only", run_id, "that experiment logged no best model")
    with tempfile.TemporaryDirectory() as tmp:
        original = OmegaConf.load(client.download_artifacts(run_id, "config/config.yaml", tmp))
    assert isinstance(original, DictConfig)
    dataset = load(original.data, original.automl)
    prepared = prepare(dataset, original.automl)
    mlflow.set_tracking_uri(uri)
    model = mlflow.sklearn.load_model(model_uri)
    with connect(cfg.compute):
        executor = RayExecutor(
            prepared,
            timeout_s=cfg.explain.timeout_minutes * 60,
            num_cpus=cfg.compute.cpus_per_iteration,
        )
        info = _explain(cfg, executor, client, run_id, model)
    console.log.info("explained run:   %s (%s)", run_id, uri)
    return info


def _input_example(X: Any) -> Any:
    return X.iloc[:5] if isinstance(X, pd.DataFrame) else X[:5]


def _finish(tracker: Tracker, result: ExperimentResult, elapsed: float) -> None:
    metrics: dict[str, float] = {f"iterations_{k}": v for k, v in _counts(result.results).items()}
    metrics["duration_seconds"] = elapsed
    if result.search_seconds is not None:
        metrics["search_seconds"] = result.search_seconds
    tags = {}
    if result.best is not None:
        metrics[f"best_{result.primary_metric}_final"] = float(result.best_score or 0.0)
        tags = {
            "automl.best_iteration": str(result.best.iteration),
            "automl.best_pipeline": result.best.candidate.description,
            "automl.best_run_id": str(result.best_run_id),
        }
    tracker.finish_parent(
        result.status,
        metrics,
        tags,
        leaderboard(result).to_csv(index=False),
        step=len(result.results),
    )


def leaderboard(result: ExperimentResult) -> pd.DataFrame:
    """Every iteration, best first (failed and cancelled last)."""
    m = result.primary_metric
    rows = [
        {
            "iteration": r.iteration,
            "pipeline": r.candidate.description,
            "family": r.candidate.family,
            "status": r.status,
            m: r.mean(m),
            f"{m}_std": r.std(m),
            "duration_seconds": round(r.duration, 3),
            "node": r.node,
            "run_id": result.run_ids.get(r.iteration),
        }
        for r in result.results
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "iteration",
            "pipeline",
            "family",
            "status",
            m,
            f"{m}_std",
            "duration_seconds",
            "node",
            "run_id",
        ],
    )
    from .metrics import METRICS

    return frame.sort_values(
        m, ascending=not METRICS[m].greater_is_better, na_position="last", kind="stable"
    ).reset_index(drop=True)


def _print_summary(result: ExperimentResult, cfg: DictConfig) -> None:
    assert result.best is not None
    out = console.log
    out.info("")
    out.info(
        "best pipeline:   iteration %d, %s",
        result.best.iteration,
        result.best.candidate.description,
    )
    out.info("best %s: %s", result.primary_metric, console.score(result.best_score))
    out.info(
        "MLflow run:      %s (parent), %s (best iteration)",
        result.parent_run_id,
        result.best_run_id,
    )
    out.info("best model:      %s", result.model_uri)
    out.info("MLflow store:    %s", result.tracking_uri)
    if cfg.tracking.kind == "local":
        out.info("open it with:    mlflow ui --backend-store-uri %s", store_uri(cfg.tracking)[0])
    else:
        out.info(
            "open it at:      %s/#/experiments/%s/runs/%s",
            result.tracking_uri.rstrip("/"),
            result.experiment_id,
            result.parent_run_id,
        )
