"""MLflow logging, kept small: one client, explicit run ids, the driver the only writer.

Layout (DESIGN.md): a parent run per experiment with the config, overrides, data
summary, ``best_<metric>`` by iteration, counts, leaderboard and best model; one nested
child run per iteration.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig

from . import dates
from .worker import CANCELLED, COMPLETED, FAILED, TIMEOUT, IterationResult

log = logging.getLogger(__name__)

RUN_STATUS = {COMPLETED: "FINISHED", FAILED: "FAILED", TIMEOUT: "KILLED", CANCELLED: "KILLED"}
# a child run's candidate (JSON of every field) and its per-fold scores of every metric
CANDIDATE_TAG, SCORES_TAG = "automl.candidate", "automl.fold_scores"
# MLflow's limits on one log_batch call and on a param value
_BATCH_PARAMS, _PARAM_CHARS, _TAG_CHARS = 100, 6000, 8000
# MLflow checks a logged input example by loading the saved model back and predicting on
# it: a second copy of the model in the driver. From this pickled size on (forests grown
# on tens of thousands of rows reach gigabytes), the model is logged with the signature
# inferred from the same rows instead, and without the example
EXAMPLE_MAX_MODEL_BYTES = 256 * 2**20


def store_uri(tracking: DictConfig) -> tuple[str, str | None]:
    """(tracking URI, artifact root for new experiments) for the tracking group."""
    if tracking.kind == "server":
        return str(tracking.uri), None
    root = Path(tracking.store_dir).expanduser().resolve()
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


# how long the first connection to a tracking server may take before the run gives up
CONNECT_SECONDS = 10.0


def check_reachable(uri: str) -> None:
    """Raise ConnectionError at once if nothing listens at an http(s) tracking URI's host
    and port. MLflow itself retries a refused connection with backoff for several seconds
    (8 s here) before it reports it; a server that is down at start is a setting to fix,
    not a hiccup."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=CONNECT_SECONDS):
            pass
    except OSError as ex:
        why = ex.strerror or str(ex) or type(ex).__name__
        raise ConnectionError(f"no server answers at {parts.hostname}:{port} ({why})") from ex


class Tracker:
    """Writes one experiment's runs; every run it opens is ended on every path."""

    def __init__(self, tracking: DictConfig, experiment_name: str) -> None:
        import mlflow
        from mlflow import MlflowClient

        for noisy in ("mlflow.store.db.utils", "alembic", "mlflow.models.model"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # the model is ours, pickled on our driver: its pickle caution is noise here
        logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
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
        with _file_lock(lock):
            self.client = MlflowClient(self.uri)
            self.experiment_id = self._experiment(experiment_name, artifact_root)
        self.parent_id: str | None = None

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
        run_name: str,
        config: dict[str, Any],
        config_yaml: str,
        overrides: list[str],
        data_summary: dict[str, Any] | None,
        primary_metric: str,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Create the parent run with its config; `data_summary` may follow later.

        A submitted experiment's run is created by the submitter, before the job that
        loads the data starts; that job logs the summary with ``log_data_summary``.
        """
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={
                "automl.kind": "experiment",
                "automl.primary_metric": primary_metric,
                "automl.overrides": " ".join(overrides) or "(none)",
                **(tags or {}),
            },
        )
        self.parent_id = run.info.run_id
        flat = {k: v for k, v in _flatten(config).items() if not k.startswith("search_space.")}
        flat["search_space.estimators"] = ",".join(
            config.get("search_space", {}).get("estimators", {})
        )
        params = [Param(k, _param_value(v)) for k, v in flat.items()]
        for i in range(0, len(params), _BATCH_PARAMS):
            self.client.log_batch(self.parent_id, params=params[i : i + _BATCH_PARAMS])
        self.client.log_text(self.parent_id, config_yaml, "config/config.yaml")
        self.client.log_text(self.parent_id, "\n".join(overrides) + "\n", "config/overrides.txt")
        if data_summary is not None:
            self.log_data_summary(data_summary)
        return self.parent_id

    def log_data_summary(self, data_summary: dict[str, Any]) -> None:
        from mlflow.entities import Param, RunTag

        assert self.parent_id
        params = [
            Param(f"data_summary.{k}", _param_value(v))
            for k, v in data_summary.items()
            if not isinstance(v, dict)
        ]
        self.client.log_batch(
            self.parent_id, params=params, tags=[RunTag("automl.data", data_summary["name"])]
        )
        self.client.log_dict(self.parent_id, data_summary, "data_summary.json")

    def attach_parent(self, run_id: str) -> None:
        """Write into an existing parent run (a resumed or submitted experiment), RUNNING again."""
        self.parent_id = run_id
        self.experiment_id = str(self.client.get_run(run_id).info.experiment_id)
        self.client.update_run(run_id, status="RUNNING")

    def log_best(self, metric: str, value: float, step: int) -> None:
        assert self.parent_id
        self.client.log_metric(self.parent_id, f"best_{metric}", value, step=step)

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
        now = int(time.time() * 1000)
        try:
            self.client.log_batch(
                self.parent_id,
                metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                tags=[RunTag(k, str(v)) for k, v in tags.items()],
            )
            if leaderboard_csv is not None:
                self.client.log_text(self.parent_id, leaderboard_csv, "leaderboard.csv")
        finally:
            self.client.set_terminated(self.parent_id, status)

    def log_model(self, pipeline: Any, input_example: Any) -> str:
        """Log the fitted pipeline (sklearn flavour) under the parent run; returns its URI."""
        import mlflow.sklearn

        assert self.parent_id
        # created here so it belongs to this experiment; left to log_model it would
        # go to the global current experiment (and its artifacts to ./mlruns)
        logged = self.client.create_logged_model(
            self.experiment_id,
            name="model",
            source_run_id=self.parent_id,
            tags={"automl.parent_run_id": self.parent_id},
        )
        with warnings.catch_warnings():
            # inputs are float columns; this hint is about integer class labels as outputs
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            size = model_bytes(pipeline)
            if size < EXAMPLE_MAX_MODEL_BYTES:
                example: dict[str, Any] = {"input_example": input_example}
            else:
                from mlflow.models import infer_signature

                signature = infer_signature(input_example, pipeline.predict(input_example))
                example = {"signature": signature}
                log.info(
                    "the model (%.0f MiB) is logged with its signature and no input example, "
                    "which MLflow would check by loading the model back",
                    size / 2**20,
                )
            with _by_value(dates):
                info = mlflow.sklearn.log_model(
                    pipeline,
                    name="model",
                    run_id=self.parent_id,
                    model_id=logged.model_id,
                    **example,
                    # listing requirements skips MLflow's slow import-based inference
                    pip_requirements=_requirements(),
                    serialization_format="cloudpickle",
                )
        self.client.set_tag(self.parent_id, "automl.best_model_uri", info.model_uri)
        return str(info.model_uri)

    # --- child runs ------------------------------------------------------------------
    def log_iteration(self, result: IterationResult, primary_metric: str) -> str:
        from mlflow.entities import Metric, Param, RunTag

        assert self.parent_id
        c = result.candidate
        run = self.client.create_run(
            self.experiment_id,
            # an ensemble's run name says which one it is: iteration-21-VotingEnsemble
            run_name=f"iteration-{result.iteration}" + (f"-{c.estimator}" if c.members else ""),
            tags={
                "mlflow.parentRunId": self.parent_id,
                "automl.iteration": str(result.iteration),
                "automl.status": result.status,
                "automl.pipeline": c.description,
                "automl.node": result.node or "unknown",
                "automl.origin": c.origin,
                "automl.kind": "ensemble" if c.members else "iteration",
            },
        )
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            metrics = [Metric("duration_seconds", result.duration, now, 0)]
            for name, scores in result.fold_scores.items():
                mean, std = result.mean(name), result.std(name)
                if mean is not None:
                    metrics.append(Metric(name, mean, now, 0))
                if std is not None:
                    metrics.append(Metric(f"{name}_std", std, now, 0))
                if name == primary_metric:
                    metrics += [
                        Metric(f"{name}_fold_{k}", float(s), now, 0) for k, s in enumerate(scores)
                    ]
            params = [Param(k, _param_value(v)) for k, v in c.params().items()]
            self.client.log_batch(
                run_id,
                metrics=metrics,
                params=params[:_BATCH_PARAMS],
                tags=[
                    RunTag("automl.family", c.family),
                    # what a resumed experiment reads back (see resume.py)
                    RunTag(CANDIDATE_TAG, self._long_tag(run_id, c.to_json(), "candidate.json")),
                    RunTag(
                        SCORES_TAG,
                        self._long_tag(run_id, json.dumps(result.fold_scores), "fold_scores.json"),
                    ),
                ],
            )
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
        return f"@{artifact}"


def read_long_tag(client: Any, run_id: str, value: str) -> str:
    """The text a `_long_tag` value stands for."""
    if not value.startswith("@"):
        return value
    return Path(client.download_artifacts(run_id, value[1:])).read_text()


@contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive advisory lock on `path` (no-op for None or where fcntl is missing)."""
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no fcntl; MLflow's own retries are all there is
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def _param_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, list | dict) else str(v)
    return text[:_PARAM_CHARS]


@contextmanager
def _by_value(module: ModuleType) -> Iterator[None]:
    """Pickle `module`'s functions with their code, not as a reference to this package:
    the date step's functions go into the logged model that way, so it loads where
    this package is not installed."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = [
        f"{pkg}=={version(pkg)}"
        for pkg in ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")
    ]
    for pkg in ("lightgbm", "xgboost"):  # the boost extra's learners, when installed
        with suppress(PackageNotFoundError):
            out.append(f"{pkg}=={version(pkg)}")
    return out


def model_bytes(model: Any) -> int:
    """The size of the model's pickle, its arrays counted without being copied.

    Pickled with cloudpickle, the serializer `log_model` saves it with (MLflow depends on
    it), so any model MLflow can log can be measured.
    """
    import cloudpickle

    arrays: list[int] = []
    rest = cloudpickle.dumps(
        model, protocol=5, buffer_callback=lambda b: arrays.append(memoryview(b).nbytes)
    )
    return len(rest) + sum(arrays)
