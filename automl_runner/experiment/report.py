"""What the experiment reports when it ends: the leaderboard, the counts and the best on
the parent run, and the summary on the console (where everything is, how to open it).
"""

from __future__ import annotations

import logging

import pandas as pd

from .. import console
from ..config.schema import TrackingConfig
from ..metrics import METRICS
from ..records import counts
from ..tracking import schema
from ..tracking.connection import store_uri
from ..tracking.store import Tracker
from .description import describe_run
from .record import ExperimentResult

log = logging.getLogger(__name__)


def finish(tracker: Tracker, result: ExperimentResult, elapsed: float) -> None:
    """End the parent run with its true status, counts, best and leaderboard."""
    metrics: dict[str, float] = {
        schema.count_metric(k): v for k, v in counts(result.results).items()
    }
    metrics[schema.DURATION] = elapsed
    if result.search_seconds is not None:
        metrics[schema.SEARCH_SECONDS] = result.search_seconds
    board = leaderboard(result)
    tags = {}
    try:
        tags[schema.DESCRIPTION] = describe_run(result, board)
    except Exception as ex:  # a description is no reason to leave the run unended
        log.warning("the run's description was not written: %s", ex)
    if result.best is not None:
        metrics[schema.final_metric(result.primary_metric)] = float(result.best_score or 0.0)
        tags |= {
            schema.BEST_ITERATION: str(result.best.iteration),
            schema.BEST_PIPELINE: result.best.candidate.description,
            schema.BEST_RUN_ID: str(result.best_run_id),
        }
    tracker.finish_parent(
        result.status,
        metrics,
        tags,
        board.to_csv(index=False),
        step=len(result.results),
    )


LEADERBOARD_COLUMNS = ("iteration", "pipeline", "family", "status")


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
            schema.std_metric(m): r.std(m),
            "duration_seconds": round(r.duration, 3),
            schema.FIT_SECONDS: _rounded(r.fit_seconds),
            schema.PREDICT_SECONDS_PER_1000: _rounded(r.predict_seconds_per_1000, 5),
            schema.MODEL_BYTES: r.model_bytes,
            "node": r.node,
            "run_id": result.run_ids.get(r.iteration),
        }
        for r in result.results
    ]
    columns = [
        *LEADERBOARD_COLUMNS,
        m,
        schema.std_metric(m),
        "duration_seconds",
        schema.FIT_SECONDS,
        schema.PREDICT_SECONDS_PER_1000,
        schema.MODEL_BYTES,
        "node",
        "run_id",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame[schema.MODEL_BYTES] = frame[schema.MODEL_BYTES].astype("Int64")
    return frame.sort_values(
        m, ascending=not METRICS[m].greater_is_better, na_position="last", kind="stable"
    ).reset_index(drop=True)


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def print_summary(result: ExperimentResult, tracking: TrackingConfig) -> None:
    """Where the best pipeline, its model and the MLflow runs are, and how to open them."""
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
    if tracking.kind == "local":
        out.info("open it with:    mlflow ui --backend-store-uri %s", store_uri(tracking)[0])
    else:
        out.info(
            "open it at:      %s/#/experiments/%s/runs/%s",
            result.tracking_uri.rstrip("/"),
            result.experiment_id,
            result.parent_run_id,
        )
