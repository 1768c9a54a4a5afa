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
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .control import ELAPSED_BEFORE, HEARTBEAT, SESSION_STARTED, STATE, driver_alive
from .errors import ConfigError
from .space import Candidate
from .tracking import CANDIDATE_TAG, RUN_STATUS, SCORES_TAG, read_long_tag
from .worker import IterationResult

log = logging.getLogger(__name__)

# automl keys a resume may change: budgets, concurrency and output, not what is searched
# or how it is scored (a key added later counts as search-relevant until listed here)
FREE_AUTOML_KEYS = frozenset(
    {
        "resume",
        "iterations",
        "iteration_timeout_minutes",
        "experiment_timeout_minutes",
        "max_concurrent_iterations",
        "verbosity",
        "debug_log",
        "model_explainability",
        # when the search stops, and what is built after it
        "enable_early_stopping",
        "early_stopping_patience",
        "experiment_exit_score",
        "enable_voting_ensemble",
        "enable_stack_ensemble",
        "ensemble_candidates",
        "ensemble_size",
        "ensemble_bags",
    }
)
# groups that define the search; compute, tracking and explain may change
SEARCH_GROUPS = ("data", "automl", "search_space")


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
    if tags.get("automl.kind") != "experiment":
        parent = tags.get("mlflow.parentRunId")
        hint = f"; pass its parent run {parent}" if parent else ""
        raise ConfigError("automl.resume", run_id, f"is not an experiment's parent run{hint}")
    if run.info.lifecycle_stage == "deleted":
        raise ConfigError("automl.resume", run_id, "that run is deleted")
    if run.info.status == "FINISHED":
        raise ConfigError(
            "automl.resume", run_id, "that experiment finished; there is nothing to resume"
        )
    if run.info.status == "RUNNING" and tags.get(STATE) != "SUBMITTED":
        alive = driver_alive(tags)
        if alive:
            raise ConfigError(
                "automl.resume",
                run_id,
                f"that experiment is still running ({alive}); stop it first "
                f"(automl-ctl stop {run_id})",
            )
    return run


def check_same_search(client: Any, run_id: str, cfg: DictConfig) -> None:
    """Refuse, in one line naming the keys, a config whose search differs from the run's."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "config/config.yaml", tmp)
        original = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    current = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(original, dict) and isinstance(current, dict)
    differ = differing_keys(original, current)
    if differ:
        raise ConfigError(
            "automl.resume",
            run_id,
            "the search-relevant config differs from that run's: "
            + ", ".join(differ)
            + "; resume with the original values or start a new experiment",
        )


def differing_keys(original: dict[Any, Any], current: dict[Any, Any]) -> list[str]:
    """Search-relevant dotted keys whose values differ, as "key (was -> now)"."""
    a, b = _flatten(original), _flatten(current)
    out = []
    for key in sorted(set(a) | set(b)):
        group, _, rest = key.partition(".")
        if group not in SEARCH_GROUPS:
            continue
        if group == "automl" and rest.split(".")[0] in FREE_AUTOML_KEYS:
            continue
        if a.get(key, _MISSING) != b.get(key, _MISSING):
            out.append(f"{key} ({_short(a.get(key, _MISSING))} -> {_short(b.get(key, _MISSING))})")
    return out


def read_previous(client: Any, run: Any) -> Previous:
    """The finished iterations of a parent run, in iteration order.

    A child run left RUNNING (its driver died while logging it) counts as finished when
    its scores were logged, and is closed; otherwise it is deleted and its iteration run
    again under a new number.
    """
    from mlflow.entities import ViewType

    parent_id = run.info.run_id
    prev = Previous(has_data_summary="automl.data" in run.data.tags)
    children = _children(client, run.info.experiment_id, parent_id, ViewType.ALL)
    numbers = [int(c.data.tags.get("automl.iteration", -1)) for c in children]
    prev.next_iteration = max(numbers, default=-1) + 1
    for child in children:
        if child.info.lifecycle_stage == "deleted":
            continue
        tags = child.data.tags
        if tags.get("automl.kind") == "ensemble":
            # ensembles are rebuilt after the search from the iterations' predictions
            continue
        if CANDIDATE_TAG not in tags or SCORES_TAG not in tags:
            if child.info.status == "RUNNING":
                log.info(
                    "resume: iteration %s was not fully logged; it is run again",
                    tags.get("automl.iteration"),
                )
                client.delete_run(child.info.run_id)
                continue
            raise ConfigError(
                "automl.resume",
                parent_id,
                f"its iteration run {child.info.run_id} has no {CANDIDATE_TAG} tag "
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
        prev.elapsed = float(run.data.metrics.get("duration_seconds", 0.0))
    elif HEARTBEAT in tags and SESSION_STARTED in tags:
        # the driver died without finishing: its time ends at its last heartbeat
        prev.elapsed = float(tags.get(ELAPSED_BEFORE) or 0) + max(
            0.0, float(tags[HEARTBEAT]) - float(tags[SESSION_STARTED])
        )
    return prev


def _result(client: Any, child: Any) -> IterationResult:
    tags, run_id = child.data.tags, child.info.run_id
    candidate = Candidate.from_json(read_long_tag(client, run_id, tags[CANDIDATE_TAG]))
    scores = json.loads(read_long_tag(client, run_id, tags[SCORES_TAG]))
    return IterationResult(
        iteration=int(tags["automl.iteration"]),
        candidate=candidate,
        status=tags["automl.status"],
        fold_scores={k: [float(x) for x in v] for k, v in scores.items()},
        duration=float(child.data.metrics.get("duration_seconds", 0.0)),
        node=tags.get("automl.node", ""),
    )


def _children(client: Any, experiment_id: str, parent_id: str, view: Any) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
            run_view_type=view,
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


_MISSING = object()


def _short(value: Any) -> str:
    if value is _MISSING:
        return "unset"
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}
