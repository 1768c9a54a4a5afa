"""Resuming an experiment from what MLflow holds (``automl.resume=PARENT_RUN_ID``).

MLflow is the record: each finished iteration's child run carries its candidate and
per-fold scores, so the results are rebuilt exactly and told to the search; iterations
that were in flight when the driver went away have no finished child run and are simply
run again. Only a config whose search-relevant keys match the original's may resume.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.settings import differing_keys, read_yaml
from ..errors import ConfigError
from ..records import Candidate, IterationResult
from . import schema
from .control import driver_alive, session_elapsed
from .store import RUN_STATUS, read_long_tag

log = logging.getLogger(__name__)


@dataclass
class Previous:
    """What earlier drivers of a parent run finished, read back from its child runs."""

    results: list[IterationResult] = field(default_factory=list)
    run_ids: dict[int, str] = field(default_factory=dict)
    # the number the next iteration gets: after every number used before
    next_iteration: int = 0
    # seconds spent by earlier drivers
    elapsed: float = 0.0
    # whether the run already has its data summary (a submitted run does not)
    has_data_summary: bool = False


def open_run(client: Any, run_id: str, uri: str) -> Any:
    """The parent run to resume, refused with one line when it cannot be resumed."""
    try:
        run = client.get_run(run_id)
    except Exception as ex:
        raise ConfigError("automl.resume", run_id, f"no such run in {uri}") from ex
    tags = run.data.tags
    if tags.get(schema.KIND) != schema.KIND_EXPERIMENT:
        parent = tags.get(schema.PARENT)
        hint = f"; pass its parent run {parent}" if parent else ""
        raise ConfigError("automl.resume", run_id, f"is not an experiment's parent run{hint}")
    if run.info.lifecycle_stage == "deleted":
        raise ConfigError("automl.resume", run_id, "that run is deleted")
    if run.info.status == "FINISHED":
        raise ConfigError(
            "automl.resume", run_id, "that experiment finished; there is nothing to resume"
        )
    if run.info.status == "RUNNING" and tags.get(schema.STATE) != schema.SUBMITTED:
        alive = driver_alive(tags)
        if alive:
            raise ConfigError(
                "automl.resume",
                run_id,
                f"that experiment is still running ({alive}); stop it first "
                f"(automl-ctl stop {run_id})",
            )
    return run


def logged_config(client: Any, run_id: str) -> str:
    """The resolved config YAML a parent run logged."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, schema.CONFIG_ARTIFACT, tmp)).read_text()


def check_same_search(client: Any, run_id: str, current: dict[str, Any]) -> None:
    """Refuse, in one line naming the keys, a config whose search differs from the run's
    (`current`: this config, flattened as ``config.settings.describe`` does)."""
    original = read_yaml(logged_config(client, run_id))
    differ = differing_keys(original, current)
    if differ:
        raise ConfigError(
            "automl.resume",
            run_id,
            "the search-relevant config differs from that run's: "
            + ", ".join(differ)
            + "; resume with the original values or start a new experiment",
        )


def read_previous(client: Any, run: Any) -> Previous:
    """The finished iterations of a parent run, in iteration order.

    A child run left RUNNING (its driver died while logging it) counts as finished when
    its scores were logged, and is closed; otherwise it is deleted and its iteration run
    again under a new number.
    """
    from mlflow.entities import ViewType

    parent_id = run.info.run_id
    prev = Previous(has_data_summary=schema.DATA in run.data.tags)
    children = _children(client, run.info.experiment_id, parent_id, ViewType.ALL)
    numbers = [int(c.data.tags.get(schema.ITERATION, -1)) for c in children]
    prev.next_iteration = max(numbers, default=-1) + 1
    for child in children:
        if child.info.lifecycle_stage == "deleted":
            continue
        tags = child.data.tags
        if tags.get(schema.KIND) == schema.KIND_ENSEMBLE:
            # ensembles are rebuilt after the search from the iterations' predictions
            continue
        if schema.CANDIDATE not in tags or schema.FOLD_SCORES not in tags:
            if child.info.status == "RUNNING":
                log.info(
                    "resume: iteration %s was not fully logged; it is run again",
                    tags.get(schema.ITERATION),
                )
                client.delete_run(child.info.run_id)
                continue
            raise ConfigError(
                "automl.resume",
                parent_id,
                f"its iteration run {child.info.run_id} has no {schema.CANDIDATE} tag "
                "(logged by an older automl-runner); it cannot be resumed",
            )
        result = _result(client, child)
        if child.info.status == "RUNNING":
            client.set_terminated(child.info.run_id, RUN_STATUS[result.status])
        prev.results.append(result)
        prev.run_ids[result.iteration] = child.info.run_id
    prev.results.sort(key=lambda r: r.iteration)
    tags = run.data.tags
    if run.info.status != "RUNNING":
        prev.elapsed = float(run.data.metrics.get(schema.DURATION, 0.0))
    else:  # the driver died without finishing
        prev.elapsed = session_elapsed(tags)
    return prev


def _result(client: Any, child: Any) -> IterationResult:
    tags, run_id = child.data.tags, child.info.run_id
    candidate = Candidate.from_json(read_long_tag(client, run_id, tags[schema.CANDIDATE]))
    scores = json.loads(read_long_tag(client, run_id, tags[schema.FOLD_SCORES]))
    return IterationResult(
        iteration=int(tags[schema.ITERATION]),
        candidate=candidate,
        status=tags[schema.STATUS],
        fold_scores={k: [float(x) for x in v] for k, v in scores.items()},
        duration=float(child.data.metrics.get(schema.DURATION, 0.0)),
        node=tags.get(schema.NODE, ""),
    )


def _children(client: Any, experiment_id: str, parent_id: str, view: Any) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{schema.PARENT}` = '{parent_id}'",
            run_view_type=view,
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs
