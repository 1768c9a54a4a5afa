"""The best model explained with SHAP (in a task of its own, under explain.timeout_minutes),
and ``explain.only=RUN``: a finished experiment's best model explained again, no search.

A failing or timed-out explanation is a note on the run, never fatal: the model is
logged already.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .. import console
from ..config.schema import ExplainConfig, RunnerConfig
from ..config.settings import from_logged
from ..data import load
from ..engine.compute import connect
from ..engine.executor import Executor, Explaining
from ..engine.ray_executor import RayExecutor
from ..errors import ConfigError, first_line
from ..tracking import schema
from ..tracking.connection import NoStore, existing_client, store_uri
from ..tracking.explanations import log_explanation, log_failure
from ..tracking.models import load_model
from ..tracking.resume import logged_config
from .setup import prepare

log = logging.getLogger(__name__)


def start_explaining(explain_cfg: ExplainConfig, executor: Executor, model: Any) -> Explaining:
    """Start explaining the best model, the one the user gets (an ensemble through its
    members): the workers explain it while the driver logs and evaluates it."""
    return executor.explain(
        model, explainer_settings(explain_cfg), explain_cfg.timeout_minutes * 60
    )


def explain(
    explaining: Explaining,
    client: Any,
    run_id: str,
    waiting: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> dict[str, Any] | None:
    """The explanation started by `start_explaining`, logged under the run once it is done;
    its summary, None if it failed or timed out (a note on the run, never fatal).

    `waiting` wraps the wait for the task (the driver's safe stretch: Ctrl-C twice
    exits there at once, not after explain.timeout_minutes)."""
    try:
        with waiting():
            explanation, rows = explaining.result()
        info = log_explanation(client, run_id, explanation, rows)
    except TimeoutError as ex:
        log.warning("explanation skipped: %s", ex)
        log_failure(client, run_id, "timeout", str(ex))
        return None
    except Exception as ex:
        log.warning("explanation failed (the best model is logged): %s", first_line(ex))
        log_failure(client, run_id, "failed", traceback.format_exc())
        return None
    console.log.info(
        "explanation:     %s explainer, %d rows, %.1f s; top features: %s",
        info["explainer"],
        info["rows"],
        info["seconds"],
        ", ".join(info["overall_imp"][:5]),
    )
    if info["members"]:
        console.log.info("explained:       %s (%s)", info["model"], info["output"])
    return info


def explainer_settings(explain_cfg: ExplainConfig) -> dict[str, Any]:
    """What the worker's explainer takes of the explain group: all but the budget and
    explain.only."""
    out = dataclasses.asdict(explain_cfg)
    for driver_side in ("timeout_minutes", "only"):
        out.pop(driver_side)
    return out


def explain_finished_run(cfg: RunnerConfig, run_id: str) -> dict[str, Any] | None:
    """explain.only=RUN_ID: explain an experiment's best model again, without searching.

    The data comes from the run's own logged config; explain and compute settings from
    this command's config.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = store_uri(cfg.tracking)[0]
    try:
        client = existing_client(uri)
    except NoStore as ex:
        raise ConfigError("explain.only", run_id, str(ex)) from ex
    try:
        run = client.get_run(run_id)
    except Exception as ex:
        raise ConfigError("explain.only", run_id, f"no such run in {uri}") from ex
    run_id = run.data.tags.get(schema.PARENT, run_id)
    run = client.get_run(run_id)
    model_uri = run.data.tags.get(schema.BEST_MODEL_URI)
    if not model_uri:
        raise ConfigError("explain.only", run_id, "that experiment logged no best model")
    original = from_logged(logged_config(client, run_id), f"explain.only={run_id}")
    prepared = prepare(load(original.data, original.automl), original.automl)
    model = load_model(uri, model_uri)
    with connect(cfg.compute):
        executor = RayExecutor(
            prepared,
            timeout_s=cfg.explain.timeout_minutes * 60,
            num_cpus=cfg.compute.cpus_per_iteration,
        )
        info = explain(start_explaining(cfg.explain, executor, model), client, run_id)
    console.log.info("explained run:   %s (%s)", run_id, uri)
    return info
