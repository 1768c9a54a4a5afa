"""Open each embedded MLflow store once, on the driver, before the sweep's jobs open it together.

Every job opens its store when it starts (automl_runner.tracking.Tracker). On a fresh
SQLite file, N jobs starting at once each run MLflow's schema migrations, and all but
one fail ("table _alembic_tmp_... already exists", "Online migration expected to match
one row"). One open here creates and migrates the file, so the jobs find it ready.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def local_store_uris(job_configs: Sequence[DictConfig]) -> list[str]:
    """The distinct embedded stores (tracking.kind=local) the jobs will write to."""
    uris: list[str] = []
    for cfg in job_configs:
        tracking = OmegaConf.select(cfg, "tracking", default=None)
        if tracking is not None and tracking.get("kind") == "local":
            # the runner's own rule for where the store is; imported only for its jobs
            from automl_runner.tracking import store_uri

            uri = store_uri(tracking)[0]
            if uri not in uris:
                Path(tracking.store_dir).expanduser().mkdir(parents=True, exist_ok=True)
                uris.append(uri)
    return uris


def prepare(uris: Sequence[str]) -> None:
    """Create and migrate each store; a store that will not open is left to the jobs to report."""
    if not uris:
        return
    from mlflow import MlflowClient

    for noisy in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for uri in uris:
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as ex:
            # each job names the store and the problem in its own one-line error
            log.warning("Ray launcher: cannot prepare the MLflow store %s: %s", uri, ex)
