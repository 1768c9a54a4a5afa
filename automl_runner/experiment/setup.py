"""The experiment's setup, in DESIGN.md's order: check what can fail early (the tracking
server, a resume), load the data, fix the validation splits, connect the compute and put
the data into its object store, open the MLflow store, and start (or attach to) the
parent run. What comes out is one ``Setup``; below it nothing reads the config's
DictConfig.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import console
from ..config.schema import AutoMLConfig, RunnerConfig, TrackingConfig
from ..config.settings import Described, experiment_name
from ..data import Dataset, guardrails, load
from ..data.sources import source
from ..engine.compute import connect, probe
from ..engine.executor import Executor
from ..engine.ray_executor import RayExecutor
from ..engine.serial import SerialExecutor
from ..errors import ConfigError, UserError, first_line
from ..records import PreparedData
from ..space import SearchSpace
from ..tracking import resume, schema
from ..tracking.connection import (
    NoStore,
    check_reachable,
    driver_settings,
    existing_client,
    store_uri,
)
from ..tracking.datasets import dataset_inputs
from ..tracking.store import Tracker

log = logging.getLogger(__name__)

# data from this size on is put into the object store before the MLflow store opens
OPEN_TRACKER_EARLY_BELOW_BYTES = 256 * 2**20


@dataclass
class Setup:
    """Everything the phases after the setup read."""

    cfg: RunnerConfig
    dataset: Dataset
    space: SearchSpace
    data: PreparedData
    executor: Executor
    # iterations at once: automl.max_concurrent_iterations, at most what the cluster holds
    slots: int
    tracker: Tracker
    parent_id: str
    # the data summary logged on the parent run (rows, features, classes, ...)
    summary: dict[str, Any]
    # what earlier drivers of a resumed run finished (empty for a new experiment)
    previous: resume.Previous
    # the data guardrails that ALERTED, "name: detail"
    alerts: list[str] = field(default_factory=list)


@contextmanager
def set_up(
    cfg: RunnerConfig,
    described: Described,
    overrides: list[str],
    tags: dict[str, str],
    serial: bool = False,
    started: float | None = None,
    journal_dir: Path | None = None,
) -> Iterator[Setup]:
    """Set the experiment up; the compute is released (a local Ray shut down) on exit.

    `started` (time.monotonic()) is when the experiment began, for the data script's
    share of automl.experiment_timeout_minutes; `journal_dir` keeps what an away tracking
    server did not take (tracking/journal.py)."""
    driver_settings()
    check_server(cfg.tracking)
    probe(cfg.compute)
    if cfg.automl.resume:
        # a resume that cannot be is refused before the data loads or Ray starts
        check_resume(cfg, described)
    dataset = load(cfg.data, cfg.automl, started)
    checked = check_guardrails(cfg, dataset)
    space = search_space(cfg, dataset)
    data = prepare(dataset, cfg.automl)
    name = experiment_name(cfg)

    def begin(executor: Executor, data: PreparedData, slots: int, tracker: Tracker) -> Setup:
        summary = dataset.summary(cfg.automl.task)
        parent_id, previous = start_parent(tracker, cfg, described, overrides, tags, summary)
        log_datasets(tracker, dataset, getattr(cfg.data, "path", None))
        alerted = [] if checked is None else checked.alerts
        if checked is not None:
            alert_tags = {c.name: f"{c.status}: {c.detail}" for c in alerted}
            tracker.log_guardrails(checked.as_dict(), alert_tags)
        return Setup(
            cfg,
            dataset,
            space,
            data,
            executor,
            slots,
            tracker,
            parent_id,
            summary,
            previous,
            [f"{c.name}: {c.detail}" for c in alerted],
        )

    if serial:
        timeout = cfg.automl.iteration_timeout_minutes * 60
        yield begin(
            SerialExecutor(data, timeout_s=timeout), data, 1, open_tracker(cfg, name, journal_dir)
        )
        return
    # the MLflow store opens (SQLite migrations, experiment lookup) while Ray starts;
    # with large data only once the data is in the object store: MLflow and its store
    # (~0.1 GB) should not add to the moment of the put, when the data exists twice
    with ThreadPoolExecutor(1) as pool:
        early = dataset.nbytes < OPEN_TRACKER_EARLY_BELOW_BYTES
        pending = pool.submit(open_tracker, cfg, name, journal_dir) if early else None
        with connect(cfg.compute) as cluster:
            if pending is not None:
                # a store that cannot open fails the run before the data is put
                pending.result()
            slots = cluster.slots(cfg.compute.cpus_per_iteration)
            wanted = cfg.automl.max_concurrent_iterations or slots
            if wanted > slots:
                log.warning(
                    "automl.max_concurrent_iterations=%d but the cluster (%d node(s), %g CPUs, "
                    "%g per iteration) holds %d at a time; running %d at once",
                    wanted,
                    cluster.nodes,
                    cluster.cpus,
                    cfg.compute.cpus_per_iteration,
                    slots,
                    slots,
                )
            executor = RayExecutor(
                data,
                timeout_s=cfg.automl.iteration_timeout_minutes * 60,
                num_cpus=cfg.compute.cpus_per_iteration,
                memory_mb=cfg.compute.memory_mb_per_iteration,
                max_retries=cfg.compute.max_retries,
            )
            # from here on the driver reads the object-store copy (zero-copy for numeric
            # arrays) and lets its own copy go: one copy of the data in memory, not two
            data = executor.shared_data()
            dataset.X, dataset.y, dataset.X_valid = data.X, data.y, data.X_valid
            tracker = pending.result() if pending else open_tracker(cfg, name, journal_dir)
            yield begin(executor, data, min(wanted, slots), tracker)


def log_datasets(tracker: Tracker, ds: Dataset, source: str | None) -> None:
    """The training, validation and test data as MLflow datasets on the parent run, and
    the first two on every iteration's run."""
    parts = {
        "training": (ds.X, ds.y),
        "validation": (ds.X_valid, ds.y_valid),
        "test": (ds.X_test, ds.y_test),
    }
    try:
        inputs = dataset_inputs(ds.name, parts, source)
    except Exception as ex:  # a dataset MLflow cannot describe is no reason to stop
        log.warning("the data was not logged as MLflow datasets: %s", first_line(ex))
        return
    tracker.log_datasets(
        list(inputs.values()), [d for context, d in inputs.items() if context != "test"]
    )


def check_guardrails(cfg: RunnerConfig, dataset: Dataset) -> guardrails.Guardrails | None:
    """The data guardrails (automl.guardrails), shown as a table before anything starts;
    with strict an alert is a one-line error here, before Ray starts or the store opens."""
    if cfg.automl.guardrails == "off":
        return None
    report = guardrails.evaluate(dataset, cfg.automl, X_test=dataset.X_test)
    console.guardrails(
        [(c.name, c.status, c.detail, c.status == guardrails.ALERTED) for c in report.checks],
        report.seconds,
    )
    guardrails.enforce(report, cfg.automl.guardrails, source(cfg.data))
    return report


def search_space(cfg: RunnerConfig, dataset: Dataset) -> SearchSpace:
    """The families this task, input and the allowed/blocked lists leave."""
    space = SearchSpace.for_task(cfg.search_space, cfg.automl, sparse_input=dataset.is_sparse)
    if not space.estimators or not space.preprocessors:
        raise ConfigError(
            "search_space",
            "",
            f"no usable {'estimator' if not space.estimators else 'preprocessor'} "
            f"for this task and input; skipped: {', '.join(space.skipped) or 'none'}",
        )
    return space


def prepare(ds: Dataset, automl: AutoMLConfig) -> PreparedData:
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
            with warnings.catch_warnings():
                # "The least populated class in y has only 1 members": the data check's
                # warning names those classes in one line of its own
                warnings.filterwarnings("ignore", "The least populated class", UserWarning)
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


def open_tracker(cfg: RunnerConfig, name: str, journal_dir: Path | None = None) -> Tracker:
    try:
        return Tracker(cfg.tracking, name, journal_dir)
    except UserError:
        raise
    except Exception as ex:
        raise _store_error(cfg.tracking, ex) from ex


def check_server(tracking: TrackingConfig) -> None:
    """A tracking server nothing answers at fails the run at once, before the data loads
    or Ray starts."""
    try:
        check_reachable(store_uri(tracking)[0])
    except ConnectionError as ex:
        raise _store_error(tracking, ex) from ex


def _store_error(tracking: TrackingConfig, ex: Exception) -> ConfigError:
    key = "tracking.uri" if tracking.kind == "server" else "tracking.store_dir"
    value = tracking.uri if tracking.kind == "server" else tracking.store_dir
    return ConfigError(key, value, f"cannot open the MLflow store: {first_line(ex)}")


def check_resume(cfg: RunnerConfig, described: Described) -> None:
    """The run automl.resume names can be resumed with this config, or one line says why."""
    uri = store_uri(cfg.tracking)[0]
    try:
        client = existing_client(uri)
    except NoStore as ex:
        raise ConfigError("automl.resume", cfg.automl.resume, str(ex)) from ex
    run_id = str(cfg.automl.resume)
    resume.open_run(client, run_id, uri)
    resume.check_same_search(client, run_id, described.flat)


def start_parent(
    tracker: Tracker,
    cfg: RunnerConfig,
    described: Described,
    overrides: list[str],
    tags: dict[str, str],
    summary: dict[str, Any],
) -> tuple[str, resume.Previous]:
    """The parent run: a new one, or (automl.resume) the one named, with what its earlier
    drivers finished read back."""
    if not cfg.automl.resume:
        parent_id = tracker.start_parent(
            described,
            cfg.automl.primary_metric,
            list(cfg.search_space.estimators),
            overrides,
            summary,
            tags,
        )
        return parent_id, resume.Previous()
    run_id = str(cfg.automl.resume)
    run = resume.open_run(tracker.client, run_id, tracker.uri)
    previous = resume.read_previous(tracker.client, run)
    tracker.attach_parent(run_id)
    if not previous.has_data_summary:
        tracker.log_data_summary(summary)
    if run.data.tags.get(schema.STATE) != schema.SUBMITTED:
        resumes = int(run.data.tags.get(schema.RESUMES, "0")) + 1
        tracker.set_tags({schema.RESUMES: str(resumes)})
        tracker.client.log_text(
            run_id, "\n".join(overrides) + "\n", schema.resume_overrides_artifact(resumes)
        )
        log.info(
            "resuming run %s: %d finished iteration(s) read back from MLflow, "
            "%s to go, numbered from %d",
            run_id,
            len(previous.results),
            "the time budget's"
            if cfg.automl.iterations is None
            else max(0, cfg.automl.iterations - len(previous.results)),
            previous.next_iteration,
        )
    return run_id, previous
