"""Points of a family's space: listing what is left untried, and the values as Optuna's
studies store them (categorical choices by index)."""

from __future__ import annotations

import itertools
import math
from typing import Any

from ..records import Candidate
from ..space import Component, SearchSpace

# a space with more points than this is not listed: 50 random draws in a row that were
# all tried already are then next to impossible unless it is used up
GRID_LIMIT = 20_000


def _grid(params: dict[str, dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Every point of a space of categorical and integer ranges; None if it has a float
    range or more than GRID_LIMIT points."""
    axes: list[list[Any]] = []
    for spec in params.values():
        if spec["type"] == "categorical":
            axes.append(list(spec["choices"]))
        elif spec["type"] == "int":
            axes.append(list(range(int(spec["low"]), int(spec["high"]) + 1)))
        else:
            return None
    if math.prod(len(a) for a in axes) > GRID_LIMIT:
        return None
    return [dict(zip(params, point, strict=True)) for point in itertools.product(*axes)]


def untried(
    space: SearchSpace,
    pres: list[Component],
    est: Component,
    seen: set[str],
    origin: str,
    fixed_pre: bool = False,
) -> list[Candidate]:
    """The candidates of one estimator (over the given preprocessors, at their defaults if
    fixed_pre) never tried, as far as they can be listed. Called after 50 random draws in
    a row were all tried: a float range cannot be listed, but random draws from it do not
    repeat, so a space with one is used up only if that range is a single point."""
    est_grid = _grid(est.params)
    if est_grid is None:
        return []
    out = []
    for pre in pres:
        pre_grid = [{}] if fixed_pre else _grid(pre.params)
        if pre_grid is None or len(pre_grid) * len(est_grid) > GRID_LIMIT:
            continue
        for pre_params, est_params in itertools.product(pre_grid, est_grid):
            c = space.candidate(pre, est, pre_params, est_params, origin)
            if c.key() not in seen:
                out.append(c)
    return out


def fail_state() -> Any:
    import optuna

    return optuna.trial.TrialState.FAIL


def distribution(spec: dict[str, Any]) -> Any:
    import optuna.distributions as d

    if spec["type"] == "categorical":
        return d.CategoricalDistribution(list(range(len(spec["choices"]))))
    if spec["type"] == "int":
        return d.IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec["log"]))
    return d.FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec["log"]))


def as_internal(spec: dict[str, Any], value: Any) -> Any:
    """A concrete value as the study stores it (categorical -> index), None if outside."""
    if spec["type"] == "categorical":
        return spec["choices"].index(value) if value in spec["choices"] else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not float(spec["low"]) <= float(value) <= float(spec["high"]):
        return None
    return int(value) if spec["type"] == "int" else float(value)


def suggest_params(trial: Any, prefix: str, params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in params.items():
        key = prefix + name
        if spec["type"] == "categorical":
            # by index: choices may be lists or None, which Optuna does not store
            out[name] = spec["choices"][
                trial.suggest_categorical(key, list(range(len(spec["choices"]))))
            ]
        elif spec["type"] == "int":
            out[name] = trial.suggest_int(
                key, int(spec["low"]), int(spec["high"]), log=bool(spec["log"])
            )
        else:
            out[name] = trial.suggest_float(
                key, float(spec["low"]), float(spec["high"]), log=bool(spec["log"])
            )
    return out
