"""The summary of a multirun sweep: one table across jobs, and a sweep-level MLflow run.

Each job's parent run carries the tag ``automl.sweep_dir`` (its Hydra sweep dir). At the
end of the multirun, whatever launcher ran the jobs, this callback finds those runs in
the MLflow store, prints one table, logs it under a sweep run in the experiment
``automl-sweeps``, and points every job's parent run at that run with the tag
``automl.sweep_run_id``.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

SWEEP_TAG = "automl.sweep_dir"
SWEEP_EXPERIMENT = "automl-sweeps"


def sweep_table(client: Any, sweep_dir: str) -> pd.DataFrame:
    """One row per job of the sweep (its parent run), best first within each metric."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_dir}'", max_results=10000
    )
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        metric = tags.get("automl.primary_metric", "")
        rows.append(
            {
                "job": int(tags.get("automl.sweep_job", -1)),
                "overrides": tags.get("automl.overrides", ""),
                "status": run.info.status,
                "metric": metric,
                "best_score": metrics.get(f"best_{metric}_final"),
                "best_pipeline": tags.get("automl.best_pipeline", ""),
                "parent_run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
            }
        )
    columns = [
        "job",
        "overrides",
        "status",
        "metric",
        "best_score",
        "best_pipeline",
        "parent_run_id",
        "experiment_id",
    ]
    return pd.DataFrame(rows, columns=columns).sort_values("job").reset_index(drop=True)


def log_sweep(client: Any, sweep_dir: str, table: pd.DataFrame) -> str:
    """The sweep-level run: the table as an artifact; the jobs' parent runs point to it."""
    from mlflow.entities import Metric, RunTag

    found = client.get_experiment_by_name(SWEEP_EXPERIMENT)
    experiment_id = found.experiment_id if found else client.create_experiment(SWEEP_EXPERIMENT)
    run = client.create_run(
        experiment_id,
        run_name=f"sweep-{sweep_dir.rstrip('/').split('/')[-1]}",
        tags={"automl.kind": "sweep", SWEEP_TAG: sweep_dir},
    )
    run_id = run.info.run_id
    try:
        client.log_text(run_id, table.to_csv(index=False), "sweep_summary.csv")
        client.log_batch(
            run_id,
            metrics=[Metric("jobs", float(len(table)), 0, 0)],
            tags=[RunTag("automl.jobs", ",".join(table["parent_run_id"]))],
        )
        for parent in table["parent_run_id"]:
            client.set_tag(parent, "automl.sweep_run_id", run_id)
    finally:
        client.set_terminated(
            run_id, "FINISHED" if (table["status"] == "FINISHED").all() else "FAILED"
        )
    return run_id


def format_table(table: pd.DataFrame) -> str:
    shown = table.assign(
        best_score=table["best_score"].map(lambda v: "nan" if pd.isna(v) else f"{v:.4f}")
    )
    return shown[
        ["job", "overrides", "status", "metric", "best_score", "best_pipeline", "parent_run_id"]
    ].to_string(index=False)


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, summarise its jobs (see the module docstring)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        from .tracking import store_uri

        sweep_dir = str(config.hydra.sweep.dir)
        try:
            uri = store_uri(config.tracking)[0]
            client = MlflowClient(uri)
            table = sweep_table(client, sweep_dir)
            if table.empty:
                log.warning("sweep summary: no job of %s reached MLflow at %s", sweep_dir, uri)
                return
            run_id = log_sweep(client, sweep_dir, table)
        except Exception as ex:  # a summary must never turn a finished sweep into a failure
            log.warning("sweep summary failed: %s", ex)
            return
        print(f"\nsweep summary ({len(table)} jobs, {sweep_dir}):", flush=True)
        print(format_table(table), flush=True)
        print(f"sweep run:       {run_id} (experiment {SWEEP_EXPERIMENT}, {uri})", flush=True)
