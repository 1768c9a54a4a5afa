"""The config as the layers below the experiment's setup get it: typed, named, described.

Hydra hands the command a DictConfig; ``settings`` turns it into the schema's dataclasses
(``RunnerConfig`` and the group options in it), so nothing below the setup reads a
DictConfig. ``describe`` keeps what the parent run logs of it (the resolved YAML and its
flattened keys), ``from_logged`` reads a logged config back, and ``differing_keys`` says
which keys a resumed experiment changed that it may not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError, first_line
from .schema import SCHEMAS, AutoMLConfig, BuiltinData, DataConfig, RunnerConfig

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
# automl.iterations when neither it nor a time budget is set (the seed's 20)
DEFAULT_ITERATIONS = 20
# data keys a resume may change: how long loading may take, not what is loaded
FREE_DATA_KEYS = frozenset({"timeout_minutes"})
# groups that define the search; compute, tracking and explain may change on resume
SEARCH_GROUPS = ("data", "automl", "search_space")


def settings(cfg: DictConfig) -> RunnerConfig:
    """The composed config as typed objects; a value still missing (``???``) is one line."""
    for key in sorted(OmegaConf.missing_keys(cfg)):
        raise ConfigError(key, "???", f"is required; set it on the command line: {key}=...")
    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, RunnerConfig)
    budget_defaults(typed.automl)
    return typed


def budget_defaults(a: AutoMLConfig) -> None:
    """The budget keys left null get their values, the one rule of docs/budgets.md
    ("Defaults"): a time budget is spent, an iteration budget may stop early.

    - automl.iterations: 20 without a time budget; with experiment_timeout_minutes, no
      bound (None): the clock ends the search.
    - automl.enable_early_stopping: on for an iteration budget; off under a time budget,
      where patience ended 60 s searches after 12 to 40 s. Set either explicitly to keep it.
    """
    timed = a.experiment_timeout_minutes is not None
    if a.iterations is None and not timed:
        a.iterations = DEFAULT_ITERATIONS
    if a.enable_early_stopping is None:
        a.enable_early_stopping = not timed


@dataclass(frozen=True)
class Described:
    """What the parent run keeps of the config: the resolved YAML, and every key flattened
    (``automl.iterations``: 20) for its params."""

    yaml: str
    flat: dict[str, Any]


def describe(cfg: DictConfig) -> Described:
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return Described(OmegaConf.to_yaml(cfg, resolve=True), flatten(container))


def from_logged(text: str, where: str) -> RunnerConfig:
    """A config logged as YAML by an earlier run, typed again; `where` names the key
    that asked for it (explain.only=RUN), for the error line of a config this version
    cannot read."""
    try:
        raw = OmegaConf.create(text)
        assert isinstance(raw, DictConfig)
        base = OmegaConf.structured(RunnerConfig)
        base.compute = OmegaConf.structured(SCHEMAS[f"compute/{raw.compute.kind}"])
        base.data = OmegaConf.structured(SCHEMAS[f"data/{raw.data.kind}"])
        typed = OmegaConf.to_object(OmegaConf.merge(base, raw))
    except (OmegaConfBaseException, KeyError, AttributeError) as ex:
        key, _, value = where.partition("=")
        raise ConfigError(key, value, f"its logged config cannot be read: {first_line(ex)}") from ex
    assert isinstance(typed, RunnerConfig)
    budget_defaults(typed.automl)
    return typed


def read_yaml(text: str) -> dict[str, Any]:
    """A logged config's YAML as plain dicts and lists, read as OmegaConf wrote it."""
    container = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


def experiment_name(cfg: RunnerConfig) -> str:
    """The MLflow experiment: tracking.experiment_name, else automl-<data set name>."""
    return cfg.tracking.experiment_name or f"automl-{data_name(cfg.data)}"


def data_name(data: DataConfig) -> str:
    """The data set's name: the builtin set's, data.name, else the file's stem (the
    folder's name for a script called get_data.py)."""
    if isinstance(data, BuiltinData):
        return str(data.name)
    if data.name:
        return str(data.name)
    path = Path(data.path)
    return path.parent.name if path.stem == "get_data" and path.parent.name else path.stem


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists and empty dicts are values."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def differing_keys(original: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Search-relevant dotted keys whose values differ, as "key (was -> now)"."""
    a, b = flatten(original), flatten(current)
    out = []
    for key in sorted(set(a) | set(b)):
        group, _, rest = key.partition(".")
        if group not in SEARCH_GROUPS:
            continue
        if group == "automl" and rest.split(".")[0] in FREE_AUTOML_KEYS:
            continue
        if group == "data" and rest in FREE_DATA_KEYS:
            continue
        if a.get(key, _MISSING) != b.get(key, _MISSING):
            out.append(f"{key} ({_short(a.get(key, _MISSING))} -> {_short(b.get(key, _MISSING))})")
    return out


_MISSING = object()


def _short(value: Any) -> str:
    if value is _MISSING:
        return "unset"
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."
