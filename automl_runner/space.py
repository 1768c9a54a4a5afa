"""The search space as data: the components read from the config, and candidates of them.

A component is one YAML entry (``_target_`` + ranges). A candidate (records.Candidate) is
a fully resolved choice of one preprocessor and one estimator with their keyword
arguments; it is all a worker needs to build the scikit-learn pipeline, so workers never
see the config.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config.schema import AutoMLConfig, ComponentSpec, SearchSpaceConfig
from .records import Candidate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Component:
    key: str
    target: str
    name: str
    display: str
    sparse: bool
    fixed: dict[str, Any]
    default: dict[str, Any]
    params: dict[str, dict[str, Any]]
    cost: float = 1.0
    encode_labels: bool = False
    scale_invariant: bool = False
    native_categorical: str | None = None

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        out = {}
        for pname, p in self.params.items():
            if p["type"] == "categorical":
                out[pname] = p["choices"][int(rng.integers(len(p["choices"])))]
                continue
            low, high = float(p["low"]), float(p["high"])
            if p["log"]:
                value = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            else:
                value = float(rng.uniform(low, high))
            out[pname] = int(round(value)) if p["type"] == "int" else value
        return out


@dataclass
class SearchSpace:
    preprocessors: list[Component]
    estimators: list[Component]
    # families left out, and why (not installed, needs dense input)
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def for_task(
        cls, spec: SearchSpaceConfig, automl: AutoMLConfig, sparse_input: bool = False
    ) -> SearchSpace:
        """The families usable for this task, input and allowed/blocked lists; either list
        may come out empty (the caller says why, with `skipped`)."""
        allowed = set(automl.allowed_models) if automl.allowed_models else None
        blocked = set(automl.blocked_models)
        skipped: list[str] = []

        def read(group: dict[str, ComponentSpec], keep: Callable[[ComponentSpec], bool]):
            out = []
            for key, c in group.items():
                if not keep(c):
                    continue
                if sparse_input and not c.sparse:
                    skipped.append(f"{key} (needs dense input)")
                    continue
                if not importable(c._target_):
                    skipped.append(f"{key} ({c._target_} is not installed)")
                    continue
                out.append(
                    Component(
                        key=str(key),
                        target=c._target_,
                        name=c.name,
                        display=c.display,
                        sparse=c.sparse,
                        fixed=dict(c.fixed),
                        default=dict(c.default),
                        params={k: dataclasses.asdict(p) for k, p in c.params.items()},
                        cost=float(c.cost),
                        encode_labels=bool(c.encode_labels),
                        scale_invariant=bool(c.scale_invariant),
                        native_categorical=c.native_categorical or None,
                    )
                )
            return out

        estimators = read(
            spec.estimators,
            lambda c: (
                c.task == automl.task
                and (allowed is None or c.name in allowed)
                and c.name not in blocked
            ),
        )
        preprocessors = read(spec.preprocessors, lambda c: c.task in (None, automl.task))
        for note in skipped:
            log.info("search space: skipping %s", note)
        return cls(preprocessors, estimators, skipped)

    def candidate(
        self,
        pre: Component,
        est: Component,
        pre_params: dict[str, Any],
        est_params: dict[str, Any],
        origin: str,
    ) -> Candidate:
        """The candidate of `pre` before `est`; a family that takes categorical columns
        natively gets no scaling step (it is scale-invariant, and a scaler would turn the
        categories' integer codes into floats), whatever `pre` is."""
        native = est.native_categorical
        return Candidate(
            preprocessor="" if native else pre.key,
            preprocessor_target="" if native else pre.target,
            preprocessor_params={} if native else {**pre.fixed, **pre_params},
            estimator=est.key,
            estimator_target=est.target,
            estimator_params={**est.fixed, **est_params},
            description=est.display if native else f"{pre.display} {est.display}",
            family=est.name,
            origin=origin,
            encode_labels=est.encode_labels,
            native_categorical=native or "",
        )


_IMPORTABLE: dict[str, bool] = {}


def importable(target: str) -> bool:
    if target not in _IMPORTABLE:
        try:
            import_target(target)
            _IMPORTABLE[target] = True
        except (ImportError, AttributeError):
            _IMPORTABLE[target] = False
    return _IMPORTABLE[target]


def import_target(target: str) -> type:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)
