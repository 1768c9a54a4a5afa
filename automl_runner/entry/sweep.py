"""The summary of a multirun sweep: one table across jobs, and a sweep-level MLflow run.

Each job's parent run carries its Hydra sweep dir as a tag. At the end of the multirun,
whatever launcher ran the jobs, this callback finds those runs in the MLflow store,
prints one table, and logs it under a sweep run (``tracking.sweeps``).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..config.schema import TrackingConfig
from ..tracking import schema
from ..tracking.connection import client_for, store_uri
from ..tracking.sweeps import log_sweep, sweep_table

log = logging.getLogger(__name__)


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
        sweep_dir = str(config.hydra.sweep.dir)
        try:
            uri, artifact_root = store_uri(TrackingConfig(**config.tracking))
            client = client_for(uri)
            table = sweep_table(client, sweep_dir)
            if table.empty:
                log.warning("sweep summary: no job of %s reached MLflow at %s", sweep_dir, uri)
                return
            run_id = log_sweep(client, sweep_dir, table, artifact_root)
        except Exception as ex:  # a summary must never turn a finished sweep into a failure
            log.warning("sweep summary failed: %s", ex)
            return
        print(f"\nsweep summary ({len(table)} jobs, {sweep_dir}):", flush=True)
        print(format_table(table), flush=True)
        print(
            f"sweep run:       {run_id} (experiment {schema.SWEEP_EXPERIMENT}, {uri})", flush=True
        )
