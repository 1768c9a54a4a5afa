"""The status of an experiment, read from MLflow alone.

The driver keeps its progress on the parent run (``control``), so any process on any
machine that reaches the tracking store can ask: state, iterations done / running /
failed / timed out / cancelled, the best score and pipeline so far, time against budget.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..console import duration, score
from ..errors import UserError
from . import schema
from .control import driver_alive, session_elapsed

# states in which a driver is (or is about to be) at work
ACTIVE = schema.ACTIVE


@dataclass
class ExperimentStatus:
    run_id: str
    experiment: str
    tracking_uri: str
    # SUBMITTED, RUNNING, STOPPING, ENSEMBLING, REFITTING, then FINISHED, KILLED or FAILED;
    # LOST when the run says RUNNING but its driver is gone (resume it with automl.resume)
    state: str
    primary_metric: str
    # automl.iterations of the driver (the budget)
    iterations: int | None = None
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0
    # stopped past their memory limit (compute.memory_mb_per_iteration)
    memout: int = 0
    # ensemble iterations (after the search; not counted in `iterations`)
    ensembles: int = 0
    # (iteration, pipeline, seconds it has been running)
    running: list[tuple[int, str, float]] = field(default_factory=list)
    best_score: float | None = None
    best_iteration: int | None = None
    best_pipeline: str | None = None
    elapsed_seconds: float = 0.0
    # automl.experiment_timeout_minutes in seconds; None = no time budget
    budget_seconds: float | None = None
    driver: str | None = None
    # seconds since the driver's last heartbeat
    heartbeat_age: float | None = None
    job_id: str | None = None
    # request tag -> the driver's answer ("requested" until it acts)
    requests: dict[str, str] = field(default_factory=dict)
    model_uri: str | None = None

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.timed_out + self.cancelled + self.memout

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "done": self.done, "active": self.active}

    def __str__(self) -> str:
        lines = [("run", f"{self.run_id} (experiment {self.experiment})")]
        state = self.state
        if self.driver and self.active:
            heard = (
                "" if self.heartbeat_age is None else f", heard from {self.heartbeat_age:.0f} s ago"
            )
            state += f" (driver {self.driver}{heard})"
        if self.state == "LOST":
            state += f": resume it with automl.resume={self.run_id}"
        lines.append(("state", state))
        of = f" of {self.iterations}" if self.iterations is not None else ""
        lines.append(
            (
                "iterations",
                f"{self.done}{of} done: {self.completed} completed, {self.failed} failed, "
                f"{self.timed_out} timed out, {self.cancelled} cancelled"
                + (f", {self.memout} out of memory" if self.memout else "")
                + f"; {len(self.running)} running"
                + (f"; {self.ensembles} ensemble(s)" if self.ensembles else ""),
            )
        )
        for n, pipeline, seconds in self.running:
            lines.append(("running", f"{n:<4} {pipeline}, for {duration(seconds)}"))
        if self.best_score is not None:
            where = f"iteration {self.best_iteration}, {self.best_pipeline}"
            lines.append(("best", f"{self.primary_metric} {score(self.best_score)} ({where})"))
        budget = (
            f" of {duration(self.budget_seconds)}"
            if self.budget_seconds is not None
            else " (no time budget)"
        )
        lines.append(("elapsed", duration(self.elapsed_seconds) + budget))
        if self.job_id:
            lines.append(("job", self.job_id))
        for key, answer in sorted(self.requests.items()):
            lines.append(("request", f"{_request_name(key)}: {answer}"))
        if self.model_uri:
            lines.append(("best model", self.model_uri))
        lines.append(("MLflow store", self.tracking_uri))
        return "\n".join(f"{label + ':':<17}{text}" for label, text in lines)


def read_status(client: Any, run_id: str, tracking_uri: str) -> ExperimentStatus:
    """The status of the experiment whose parent run (or any iteration run) is `run_id`."""
    try:
        run = client.get_run(run_id)
    except Exception as ex:
        raise UserError(f"run {run_id}: no such run in {tracking_uri}") from ex
    tags = run.data.tags
    if tags.get(schema.KIND) in (schema.KIND_ITERATION, schema.KIND_ENSEMBLE):
        run = client.get_run(tags[schema.PARENT])
        tags = run.data.tags
    elif tags.get(schema.KIND) != schema.KIND_EXPERIMENT:
        raise UserError(f"run {run_id}: not an automl-runner experiment ({tracking_uri})")
    m, params, now = run.data.metrics, run.data.params, time.time()
    metric = tags.get(schema.PRIMARY_METRIC, "")
    experiment = client.get_experiment(run.info.experiment_id).name
    st = ExperimentStatus(
        run_id=run.info.run_id,
        experiment=experiment,
        tracking_uri=tracking_uri,
        state=_state(run),
        primary_metric=metric,
        best_score=m.get(schema.best_metric(metric)),
        driver=tags.get(schema.DRIVER),
        job_id=tags.get(schema.JOB_ID),
        model_uri=tags.get(schema.BEST_MODEL_URI),
    )
    for count in schema.COUNTS:
        setattr(st, count, int(m.get(schema.count_metric(count), 0)))
    if schema.BUDGET_ITERATIONS in tags:
        iterations = tags[schema.BUDGET_ITERATIONS]
    else:  # a run that has not started its search yet: what it was asked for
        iterations = params.get(schema.ITERATIONS_PARAM)
    st.iterations = int(iterations) if iterations not in (None, "", "None") else None
    minutes = tags.get(schema.BUDGET_MINUTES, params.get(schema.TIMEOUT_PARAM))
    st.budget_seconds = float(minutes) * 60 if minutes not in (None, "", "None") else None
    if schema.BEST_ITERATION in tags:
        st.best_iteration = int(tags[schema.BEST_ITERATION])
        st.best_pipeline = tags.get(schema.BEST_PIPELINE)
    if schema.HEARTBEAT in tags:
        st.heartbeat_age = max(0.0, now - float(tags[schema.HEARTBEAT]))
    if st.active:
        st.elapsed_seconds = session_elapsed(tags, until=now)
        st.running = [
            (int(n), str(desc), max(0.0, now - float(t)))
            for n, desc, t in json.loads(tags.get(schema.RUNNING) or "[]")
        ]
    elif st.state == "LOST":
        # the driver died without writing its duration: up to its last heartbeat
        st.elapsed_seconds = session_elapsed(tags)
    else:
        st.elapsed_seconds = float(m.get(schema.DURATION, 0.0))
    st.requests = {k: v for k, v in tags.items() if schema.is_request(k)}
    return st


def _state(run: Any) -> str:
    if run.info.status != "RUNNING":
        return str(run.info.status)
    tags = run.data.tags
    state = tags.get(schema.STATE, schema.SEARCHING)
    if state != schema.SUBMITTED and driver_alive(tags) is None:
        return "LOST"
    return state


def _request_name(key: str) -> str:
    if key == schema.STOP:
        return "stop"
    return f"cancel iteration {key[len(schema.CANCEL) :]}"
