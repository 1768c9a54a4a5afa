"""A multirun sweep in MLflow: its jobs' parent runs found by their sweep tag, and a
summary run (experiment SWEEP_EXPERIMENT) holding the table, which every job's parent run
points to.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from . import schema


def sweep_table(client: Any, sweep_dir: str) -> pd.DataFrame:
    """One row per job of the sweep (its parent run), best first within each metric."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, filter_string=f"tags.`{schema.SWEEP_DIR}` = '{sweep_dir}'", max_results=10000
    )
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        metric = tags.get(schema.PRIMARY_METRIC, "")
        rows.append(
            {
                "job": int(tags.get(schema.SWEEP_JOB, -1)),
                "overrides": tags.get(schema.OVERRIDES, ""),
                "status": run.info.status,
                "metric": metric,
                "best_score": metrics.get(schema.final_metric(metric)),
                "best_pipeline": tags.get(schema.BEST_PIPELINE, ""),
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


def log_sweep(client: Any, sweep_dir: str, table: pd.DataFrame, artifact_root: str | None) -> str:
    """The sweep-level run: the table as an artifact; the jobs' parent runs point to it.

    `artifact_root` is where a new sweep experiment keeps its artifacts (the store's,
    ``connection.store_uri``'s second value); None lets a tracking server decide.
    """
    from mlflow.entities import Metric, RunTag

    found = client.get_experiment_by_name(schema.SWEEP_EXPERIMENT)
    experiment_id = (
        found.experiment_id
        if found
        else client.create_experiment(schema.SWEEP_EXPERIMENT, artifact_location=artifact_root)
    )
    run = client.create_run(
        experiment_id,
        run_name=f"sweep-{sweep_dir.rstrip('/').split('/')[-1]}",
        tags={schema.KIND: schema.KIND_SWEEP, schema.SWEEP_DIR: sweep_dir},
    )
    run_id = run.info.run_id
    try:
        client.log_text(run_id, table.to_csv(index=False), schema.SWEEP_SUMMARY_ARTIFACT)
        client.log_batch(
            run_id,
            metrics=[Metric("jobs", float(len(table)), 0, 0)],
            tags=[RunTag(schema.SWEEP_JOBS, ",".join(table["parent_run_id"]))],
        )
        for parent in table["parent_run_id"]:
            client.set_tag(parent, schema.SWEEP_RUN_ID, run_id)
    finally:
        client.set_terminated(
            run_id, "FINISHED" if (table["status"] == "FINISHED").all() else "FAILED"
        )
    return run_id
