"""Submit an experiment to a Ray cluster as a Ray job, and steer it from anywhere.

``submit`` composes and validates the config here (bad input fails before anything is
submitted), creates the MLflow parent run at once (so its id is known before the job
starts), and submits a Ray job whose entrypoint is the ordinary command attached to that
run (``automl-runner ... automl.resume=RUN_ID``). Everything afterwards goes through
MLflow (``tracking.status``, ``tracking.control``), so a handle works from any process that reaches the
tracking store: ``attach(run_id)`` makes one.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Any

from ..config.compose import compose
from ..config.schema import ClusterCompute, RayCompute, RunnerConfig
from ..config.settings import describe, experiment_name, settings
from ..config.validate import validate
from ..engine import fake_cluster, jobs, provision
from ..errors import ComputeError, ConfigError, UserError, first_line
from ..tracking import control, resume, schema
from ..tracking.connection import NoStore, client_for, default_tracking_uri, existing_client
from ..tracking.models import load_model
from ..tracking.status import ExperimentStatus, read_status
from ..tracking.store import Tracker

# the Ray dashboard's port, where the Jobs API listens unless the head says otherwise
DASHBOARD_PORT = 8265


class RemoteExperiment:
    """A handle on an experiment whose driver runs elsewhere; every call goes through MLflow."""

    def __init__(
        self,
        run_id: str,
        tracking_uri: str,
        job_id: str | None = None,
        address: str | None = None,
    ) -> None:
        self.run_id, self.tracking_uri = run_id, tracking_uri
        self.job_id, self.address = job_id, address
        self.client = client_for(tracking_uri)

    def __repr__(self) -> str:
        return f"RemoteExperiment(run_id={self.run_id!r}, job_id={self.job_id!r})"

    def status(self) -> ExperimentStatus:
        """State, iteration counts, what runs, best so far, time against budget."""
        return read_status(self.client, self.run_id, self.tracking_uri)

    def wait(self, timeout: float | None = None, poll: float = 2.0) -> ExperimentStatus:
        """Block until the experiment ends (or `timeout` seconds pass: TimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status()
            if not st.active:
                return st
            if st.state == schema.SUBMITTED and self._job_ended_without_driver():
                return self.status()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.run_id} is still {st.state} after {timeout:g} s")
            time.sleep(poll)

    def cancel_iteration(self, iteration: int, timeout: float = 30.0) -> str:
        """Kill one running iteration (recorded CANCELLED; the experiment goes on).

        Returns the driver's answer ("cancelled", "ignored: ...") or "requested" if it has
        not answered within `timeout` seconds (it will act when it next looks).
        """
        if iteration < 0:
            # no driver reads such a request: it would only wait out `timeout`
            raise UserError(
                f"iteration {iteration}: no such iteration; iterations are numbered from 0"
            )
        self._check_active()
        control.request_cancel(self.client, self.run_id, iteration)
        tag = schema.cancel_tag(iteration)
        return control.await_answer(self.client, self.run_id, tag, timeout)

    def stop(self, timeout: float = 30.0) -> str:
        """No new iterations, cancel those in flight, then refit, explain and log the best."""
        self._check_active()
        control.request_stop(self.client, self.run_id)
        return control.await_answer(self.client, self.run_id, schema.STOP, timeout)

    def get_output(self) -> tuple[Any, Any]:
        """(best iteration's MLflow run, fitted scikit-learn pipeline), as ``run()`` gives."""
        run = self.client.get_run(self.run_id)
        best_run_id = run.data.tags.get(schema.BEST_RUN_ID)
        model_uri = run.data.tags.get(schema.BEST_MODEL_URI)
        if not best_run_id or not model_uri:
            raise UserError(
                f"run {self.run_id}: no best model logged yet (state {self.status().state})"
            )
        return self.client.get_run(best_run_id), load_model(self.tracking_uri, model_uri)

    def logs(self) -> str:
        """The Ray job's output (the driver's console)."""
        if not (self.job_id and self.address):
            raise UserError(f"run {self.run_id}: not submitted as a Ray job")
        return jobs.job_logs(self.address, self.job_id)

    def _check_active(self) -> None:
        st = self.status()
        if not st.active:
            raise UserError(f"run {self.run_id} is not running ({st.state})")

    def _job_ended_without_driver(self) -> bool:
        """A job that ended before its driver attached (say, a broken environment on the
        head) would leave the run SUBMITTED for ever: end it FAILED with the job's word."""
        if not (self.job_id and self.address):
            return False
        job = jobs.job_state(self.address, self.job_id)
        if not job.ended:
            return False
        time.sleep(2.0)  # the driver may just have attached
        if self.status().state != schema.SUBMITTED:
            return False
        message = job.message.strip().splitlines()
        why = f"job {self.job_id} ended {job.status}: {message[-1] if message else ''}"
        self.client.set_tag(self.run_id, schema.ERROR, why[:5000])
        self.client.set_tag(self.run_id, schema.STATE, "FAILED")
        self.client.set_terminated(self.run_id, "FAILED")
        return True


def attach(run_id: str, tracking_uri: str | None = None) -> RemoteExperiment:
    """A handle on an experiment started elsewhere, from its parent run id."""
    uri = tracking_uri or default_tracking_uri()
    try:
        existing_client(uri)
    except NoStore as ex:
        hint = "" if tracking_uri else " (pass --tracking-uri, or set MLFLOW_TRACKING_URI)"
        raise UserError(f"{ex}{hint}") from ex
    handle = RemoteExperiment(run_id, uri)
    run = read_status(handle.client, run_id, uri)  # refuses unknown runs in one line
    handle.run_id = run.run_id
    tags = handle.client.get_run(run.run_id).data.tags
    handle.job_id, handle.address = tags.get(schema.JOB_ID), tags.get(schema.JOB_ADDRESS)
    return handle


def submit(overrides: list[str] | None = None, address: str | None = None) -> RemoteExperiment:
    """Submit an experiment as a Ray job and return at once with a handle on it.

    `address` is the Ray Jobs API (the dashboard, ``http://HEAD:8265``); by default
    RAY_API_SERVER_ADDRESS, else the head named by ``compute.address`` on port 8265. The
    job runs the same overrides, made fit to run elsewhere: relative store and data paths
    become absolute, and ``compute=local`` becomes ``compute=ray compute.address=auto``
    (the cluster the job runs on).
    """
    given = list(overrides or [])
    final = given + _remote_overrides(settings(compose(given)))
    composed = compose(final)
    cfg = settings(composed)
    validate(cfg)
    address = _jobs_address(cfg, address)
    # nothing is created in the store for a submission that cannot be made
    jobs.check_jobs_api(address)
    tracker = Tracker(cfg.tracking, experiment_name(cfg))
    described = describe(composed)
    if cfg.automl.resume:
        run_id = str(cfg.automl.resume)
        resume.open_run(tracker.client, run_id, tracker.uri)
        resume.check_same_search(tracker.client, run_id, described.flat)
        command = final
    else:
        run_id = tracker.start_parent(
            described,
            cfg.automl.primary_metric,
            list(cfg.search_space.estimators),
            final,
            data_summary=None,
            tags={schema.STATE: schema.SUBMITTED},
        )
        command = [*final, f"automl.resume={run_id}"]
    entrypoint = shlex.join(["automl-runner", *command])
    try:
        job_id = jobs.submit_job(address, entrypoint, metadata={schema.JOB_RUN_ID: run_id})
    except Exception as ex:
        if not cfg.automl.resume:
            tracker.set_tags(
                {schema.ERROR: f"job submission failed: {ex}"[:5000], schema.STATE: "FAILED"}
            )
            tracker.client.set_terminated(run_id, "FAILED")
        raise ComputeError(f"cannot submit a Ray job to {address}: {first_line(ex)}") from ex
    tracker.set_tags({schema.JOB_ID: job_id, schema.JOB_ADDRESS: address})
    return RemoteExperiment(run_id, tracker.uri, job_id, address)


def _remote_overrides(cfg: RunnerConfig) -> list[str]:
    """Overrides that make the composed config mean the same thing in the job."""
    extra = []
    if cfg.tracking.kind == "local" and not Path(cfg.tracking.store_dir).is_absolute():
        extra.append(f"tracking.store_dir={Path(cfg.tracking.store_dir).expanduser().resolve()}")
    path = getattr(cfg.data, "path", None)
    if path and not Path(path).is_absolute():
        extra.append(f"data.path={Path(path).expanduser().resolve()}")
    if cfg.compute.kind == "local":
        extra += ["compute=ray", "compute.address=auto"]
    if isinstance(cfg.compute, ClusterCompute) and not cfg.compute.address:
        # the job's driver runs on the cluster's head: it joins that cluster, and leaves
        # it up; its state folder is this machine's
        extra.append("compute.address=auto")
    return extra


def _cluster_jobs_address(c: ClusterCompute) -> str:
    """The Jobs API of a compute=cluster cluster that is up (automl-ctl cluster up)."""
    if c.provider == "fake":
        fake_cluster.use_token()
    state = provision.read_state(c)
    if state is None or not state.dashboard:
        raise ConfigError(
            "compute.cluster_name",
            c.cluster_name,
            "that cluster is not up; bring it up first with `automl-ctl cluster up "
            f"compute=cluster compute.provider={c.provider} compute.cluster_name={c.cluster_name}`",
        )
    return state.dashboard


def _jobs_address(cfg: RunnerConfig, address: str | None) -> str:
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS")
    if not address and isinstance(cfg.compute, ClusterCompute):
        return _cluster_jobs_address(cfg.compute)
    if not address and isinstance(cfg.compute, RayCompute) and cfg.compute.address != "auto":
        host = cfg.compute.address.removeprefix("ray://").rpartition(":")[0]
        address = f"http://{host}:{DASHBOARD_PORT}"
    if not address:
        raise ConfigError(
            "compute.address",
            getattr(cfg.compute, "address", "auto"),
            "submitting needs the Ray head: pass --address http://HEAD:8265 (its dashboard), "
            "set RAY_API_SERVER_ADDRESS, or set compute=ray compute.address=HEAD:PORT",
        )
    return address if "://" in address else f"http://{address}"
