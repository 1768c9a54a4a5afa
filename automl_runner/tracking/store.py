"""The MLflow store and the experiment's runs in it, kept small: one client, explicit run
ids, the driver the only writer. What each iteration adds (its child run, the best so far)
is written behind the search loop (``behind``); every other write waits for those first.

Layout (docs/mlflow-layout.md): a parent run per experiment with the config, overrides,
data summary, ``best_<metric>`` by iteration, counts, leaderboard and best model; one
nested child run per iteration. Every name another process reads is in ``schema``.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..config.schema import TrackingConfig
from ..config.settings import Described
from ..records import CANCELLED, COMPLETED, FAILED, MEMOUT, TIMEOUT, IterationResult
from . import schema
from .behind import WriteBehind
from .connection import driver_settings, file_lock, store_uri
from .journal import JournaledClient

log = logging.getLogger(__name__)

# the MLflow run status of an iteration's child run
RUN_STATUS = {
    COMPLETED: "FINISHED",
    FAILED: "FAILED",
    TIMEOUT: "KILLED",
    CANCELLED: "KILLED",
    MEMOUT: "FAILED",
}
# MLflow's limits on one log_batch call and on a param value
_BATCH_PARAMS, _PARAM_CHARS, _TAG_CHARS = 100, 6000, 8000


class Tracker:
    """Writes one experiment's runs; every run it opens is ended on every path."""

    def __init__(
        self, tracking: TrackingConfig, experiment_name: str, journal_dir: Path | None = None
    ) -> None:
        """`journal_dir` holds the writes a tracking server did not answer (journal.py);
        by default ``tracking-journal`` in the working folder."""
        import mlflow
        from mlflow import MlflowClient

        driver_settings()
        self.uri, artifact_root = store_uri(tracking)
        self.experiment_name = experiment_name
        lock = None
        if tracking.kind == "local":
            root = Path(tracking.store_dir).expanduser()
            root.mkdir(parents=True, exist_ok=True)
            lock = root / ".lock"
        # log_model reads the global URI; set it here, the one place that writes
        mlflow.set_tracking_uri(self.uri)
        # several runners (a sweep's jobs, two commands in one folder) may open a fresh
        # embedded store at once; MLflow's schema migration is not safe to run twice
        # concurrently, so the first open and the experiment lookup happen under a lock
        with file_lock(lock):
            self.client = JournaledClient(
                MlflowClient(self.uri),
                journal_dir or Path("tracking-journal"),
                tracking.outage_minutes * 60,
                self.uri,
            )
            self.experiment_id = self._experiment(experiment_name, artifact_root)
        self.parent_id: str | None = None
        # the training and validation data as MLflow dataset inputs, for every child run
        self.child_inputs: list[Any] = []
        self._behind = WriteBehind()

    def _experiment(self, name: str, artifact_root: str | None) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return str(self.client.create_experiment(name, artifact_location=artifact_root))
            except MlflowException:
                # another runner created it between our lookup and create (tracking servers)
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    # --- parent run ------------------------------------------------------------------
    def start_parent(
        self,
        config: Described,
        primary_metric: str,
        estimators: list[str],
        overrides: list[str],
        data_summary: dict[str, Any] | None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Create the parent run with its config; `data_summary` may follow later.

        A submitted experiment's run is created by the submitter, before the job that
        loads the data starts; that job logs the summary with ``log_data_summary``.
        The search space is logged as the names of its estimator families, not the
        hundreds of keys of their ranges (those are in the config artifact).
        """
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{self.experiment_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={
                schema.KIND: schema.KIND_EXPERIMENT,
                schema.PRIMARY_METRIC: primary_metric,
                schema.OVERRIDES: " ".join(overrides) or "(none)",
                **(tags or {}),
            },
        )
        self.parent_id = run.info.run_id
        flat = {k: v for k, v in config.flat.items() if not k.startswith("search_space.")}
        flat["search_space.estimators"] = ",".join(estimators)
        params = [Param(k, _param_value(v)) for k, v in flat.items()]
        for i in range(0, len(params), _BATCH_PARAMS):
            self.client.log_batch(self.parent_id, params=params[i : i + _BATCH_PARAMS])
        self.client.log_text(self.parent_id, config.yaml, schema.CONFIG_ARTIFACT)
        self.client.log_text(self.parent_id, "\n".join(overrides) + "\n", schema.OVERRIDES_ARTIFACT)
        if data_summary is not None:
            self.log_data_summary(data_summary)
        return self.parent_id

    def log_datasets(self, parent_inputs: list[Any], child_inputs: list[Any]) -> None:
        """The data as MLflow datasets: all of it on the parent, the training and
        validation rows on each iteration's run from here on."""
        assert self.parent_id
        if parent_inputs:
            self.client.log_inputs(self.parent_id, datasets=parent_inputs)
        self.child_inputs = child_inputs

    def log_data_summary(self, data_summary: dict[str, Any]) -> None:
        from mlflow.entities import Param, RunTag

        assert self.parent_id
        params = [
            Param(f"{schema.DATA_SUMMARY_PARAM}{k}", _param_value(v))
            for k, v in data_summary.items()
            if not isinstance(v, dict)
        ]
        self.client.log_batch(
            self.parent_id, params=params, tags=[RunTag(schema.DATA, data_summary["name"])]
        )
        self.client.log_dict(self.parent_id, data_summary, schema.DATA_SUMMARY_ARTIFACT)

    def log_guardrails(self, report: dict[str, Any], alerts: dict[str, str]) -> None:
        """The data guardrails as an artifact, and each alert (name -> "ALERTED: detail")
        as a tag, so a search over runs finds the experiments with a leaking column."""
        assert self.parent_id
        self.client.log_dict(self.parent_id, report, schema.GUARDRAILS_ARTIFACT)
        if alerts:
            self.set_tags({schema.guardrail_tag(k): v[:_TAG_CHARS] for k, v in alerts.items()})

    def attach_parent(self, run_id: str) -> None:
        """Write into an existing parent run (a resumed or submitted experiment), RUNNING again."""
        self.parent_id = run_id
        self.experiment_id = str(self.client.get_run(run_id).info.experiment_id)
        self.client.update_run(run_id, status="RUNNING")

    def flush(self) -> None:
        """Wait until what was written behind (child runs, best so far) is written."""
        self._behind.flush()

    def finish_parent(
        self,
        status: str,
        metrics: dict[str, float],
        tags: dict[str, str],
        leaderboard_csv: str | None,
        step: int = 0,
    ) -> None:
        from mlflow.entities import Metric, RunTag

        if self.parent_id is None:
            return
        self.flush()
        now = int(time.time() * 1000)
        try:
            self.client.log_batch(
                self.parent_id,
                metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                tags=[RunTag(k, str(v)) for k, v in tags.items()],
            )
            if leaderboard_csv is not None:
                self.client.log_text(self.parent_id, leaderboard_csv, schema.LEADERBOARD_ARTIFACT)
        finally:
            self.client.set_terminated(self.parent_id, status)

    def log_model(self, pipeline: Any, input_example: Any) -> str:
        """Log the fitted pipeline (sklearn flavour) under the parent run; returns its URI."""
        assert self.parent_id
        self.flush()
        return self.client.log_model(self.experiment_id, self.parent_id, pipeline, input_example)

    def register_model(self, name: str, model_uri: str) -> None:
        """The best model registered as `name`, alias ``champion`` (tracking.register_model)."""
        assert self.parent_id
        self.client.register_model(name, model_uri, self.parent_id)

    # --- a tracking server that went away (journal.py) -------------------------------
    def settle(self, wait: bool = True) -> bool:
        """Everything written to MLflow, waiting for an away server up to
        ``tracking.outage_minutes`` (`wait` False: one try); False if some is left in the
        journal."""
        self.flush()
        return self.client.settle(wait)

    def resolve(self, run_or_model_id: str) -> str:
        """The real id of a run or model created while the server was away."""
        return self.client.resolve(run_or_model_id)

    @property
    def journal(self) -> Path:
        return self.client.journal

    def log_scores(self, scores: dict[str, float], child_id: str) -> None:
        """Metrics (the test scores) on the parent run and on one child run."""
        from mlflow.entities import Metric

        assert self.parent_id
        self.flush()
        now = int(time.time() * 1000)
        for run_id in (self.parent_id, child_id):
            metrics = [Metric(k, float(v), now, 0) for k, v in scores.items()]
            self.client.log_batch(run_id, metrics=metrics)

    def log_folder(self, folder: Path, artifact_path: str) -> None:
        """Every file of `folder` under `artifact_path` of the parent run."""
        assert self.parent_id
        self.client.log_artifacts(self.parent_id, str(folder), artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tags on the parent run."""
        from mlflow.entities import RunTag

        assert self.parent_id
        self.client.log_batch(self.parent_id, tags=[RunTag(k, v) for k, v in tags.items()])

    # --- child runs ------------------------------------------------------------------
    def log_iteration(
        self, result: IterationResult, primary_metric: str, best: float | None, step: int
    ) -> Future[str]:
        """The iteration's child run, then the best score so far (if any) on the parent
        at `step`, both written behind the loop; the future holds the child's id."""
        assert self.parent_id
        parent = self.parent_id

        def write() -> str:
            run_id = self._write_iteration(result, primary_metric)
            if best is not None:
                key = schema.best_metric(primary_metric)
                self.client.log_metric(parent, key, best, step=step)
            return run_id

        return self._behind.put(write)

    def _write_iteration(self, result: IterationResult, primary_metric: str) -> str:
        from mlflow.entities import Metric, Param, RunTag

        assert self.parent_id
        c = result.candidate
        run = self.client.create_run(
            self.experiment_id,
            # an ensemble's run name says which one it is: iteration-21-VotingEnsemble
            run_name=f"iteration-{result.iteration}" + (f"-{c.estimator}" if c.members else ""),
            tags={
                schema.PARENT: self.parent_id,
                schema.ITERATION: str(result.iteration),
                schema.STATUS: result.status,
                schema.PIPELINE: c.description,
                schema.NODE: result.node or "unknown",
                schema.ORIGIN: c.origin,
                schema.KIND: schema.KIND_ENSEMBLE if c.members else schema.KIND_ITERATION,
            },
        )
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            metrics = [Metric(schema.DURATION, result.duration, now, 0)]
            for name, cost in (
                (schema.FIT_SECONDS, result.fit_seconds),
                (schema.PREDICT_SECONDS_PER_1000, result.predict_seconds_per_1000),
                (schema.MODEL_BYTES, result.model_bytes),
            ):
                if cost is not None:
                    metrics.append(Metric(name, float(cost), now, 0))
            for name, scores in result.fold_scores.items():
                mean, std = result.mean(name), result.std(name)
                if mean is not None:
                    metrics.append(Metric(name, mean, now, 0))
                if std is not None:
                    metrics.append(Metric(schema.std_metric(name), std, now, 0))
                if name == primary_metric:
                    metrics += [
                        Metric(schema.fold_metric(name, k), float(s), now, 0)
                        for k, s in enumerate(scores)
                    ]
            params = [Param(k, _param_value(v)) for k, v in c.params().items()]
            self.client.log_batch(
                run_id,
                metrics=metrics,
                params=params[:_BATCH_PARAMS],
                tags=[
                    RunTag(schema.FAMILY, c.family),
                    # what a resumed experiment reads back (see resume.py)
                    RunTag(schema.CANDIDATE, self._long_tag(run_id, c.to_json(), "candidate.json")),
                    RunTag(
                        schema.FOLD_SCORES,
                        self._long_tag(run_id, json.dumps(result.fold_scores), "fold_scores.json"),
                    ),
                ],
            )
            if self.child_inputs:
                self.client.log_inputs(run_id, datasets=self.child_inputs)
            if result.log:
                name = "traceback.txt" if result.status == FAILED else "iteration.log"
                self.client.log_text(run_id, result.log, name)
        finally:
            self.client.set_terminated(run_id, RUN_STATUS[result.status])
        return run_id

    def _long_tag(self, run_id: str, text: str, artifact: str) -> str:
        """`text` as a tag value, or, past MLflow's tag limit, "@<artifact>" holding it."""
        if len(text) <= _TAG_CHARS:
            return text
        self.client.log_text(run_id, text, artifact)
        return f"{schema.LONG_TAG_PREFIX}{artifact}"


def read_long_tag(client: Any, run_id: str, value: str) -> str:
    """The text a `_long_tag` value stands for."""
    if not value.startswith(schema.LONG_TAG_PREFIX):
        return value
    artifact = value[len(schema.LONG_TAG_PREFIX) :]
    return Path(client.download_artifacts(run_id, artifact)).read_text()


def _param_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, list | dict) else str(v)
    return text[:_PARAM_CHARS]
