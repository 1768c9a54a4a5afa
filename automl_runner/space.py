"""The search space as data: components read from config, candidates, and pipelines.

A component is one YAML entry (``_target_`` + ranges). A candidate is a fully resolved
choice of one preprocessor and one estimator with their keyword arguments; it is all a
worker needs to build the scikit-learn pipeline, so workers never see the config.
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import Pipeline

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


@dataclass(frozen=True)
class Candidate:
    """One pipeline to try: a preprocessor and an estimator with their arguments."""

    preprocessor: str
    preprocessor_target: str
    preprocessor_params: dict[str, Any]
    estimator: str
    estimator_target: str
    estimator_params: dict[str, Any]
    description: str
    # which family, for allowed/blocked lists and the leaderboard
    family: str = ""
    # where the candidate came from: portfolio, tpe, random or ensemble
    origin: str = ""
    # an ensemble (VotingEnsemble, StackEnsemble): its member candidates, the iterations
    # they came from and their voting weights; `meta` is the stacking ensemble's final
    # estimator, already fitted on the members' out-of-fold predictions
    members: tuple[Candidate, ...] = ()
    member_iterations: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    meta: Any = field(default=None, compare=False, repr=False)
    # the estimator takes class labels 0..k-1 only: fit it behind a label encoder
    encode_labels: bool = False

    def key(self) -> str:
        return json.dumps(
            [
                self.preprocessor,
                self.preprocessor_params,
                self.estimator,
                self.estimator_params,
                list(self.member_iterations),
                list(self.weights),
            ],
            sort_keys=True,
            default=str,
        )

    def to_json(self) -> str:
        """Every field, so a resumed experiment rebuilds this exact candidate from MLflow.

        An ensemble's fitted stacker (`meta`) is not kept: a resumed experiment rebuilds
        its ensembles from its own iterations.
        """
        fields = asdict(self)
        _drop_meta(fields)
        return json.dumps(fields, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> Candidate:
        return cls._from_dict(json.loads(text))

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Candidate:
        d = dict(d)
        d["members"] = tuple(cls._from_dict(m) for m in d.get("members", ()))
        d["member_iterations"] = tuple(d.get("member_iterations", ()))
        d["weights"] = tuple(d.get("weights", ()))
        d.pop("meta", None)
        return cls(**d)

    def params(self) -> dict[str, Any]:
        """Flat name -> value, as logged to MLflow."""
        if self.members:
            return {
                "ensemble": self.estimator,
                "ensemble.iterations": ",".join(map(str, self.member_iterations)),
                "ensemble.weights": ",".join(f"{w:g}" for w in self.weights),
                "ensemble.members": " | ".join(m.description for m in self.members),
            }
        out: dict[str, Any] = {"preprocessor": self.preprocessor, "estimator": self.estimator}
        out.update({f"preprocessor.{k}": v for k, v in self.preprocessor_params.items()})
        out.update({f"estimator.{k}": v for k, v in self.estimator_params.items()})
        return out


def _drop_meta(fields: dict[str, Any]) -> None:
    fields.pop("meta", None)
    for member in fields.get("members", ()):
        _drop_meta(member)


@dataclass
class SearchSpace:
    preprocessors: list[Component]
    estimators: list[Component]
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg: DictConfig, sparse_input: bool = False) -> SearchSpace:
        """The families usable for this task, input and allowed/blocked lists."""
        task, automl = cfg.automl.task, cfg.automl
        allowed = set(automl.allowed_models) if automl.allowed_models else None
        blocked = set(automl.blocked_models)
        skipped: list[str] = []

        def read(group: str, keep) -> list[Component]:
            out = []
            for key, node in cfg.search_space[group].items():
                spec = OmegaConf.to_container(node, resolve=True)
                assert isinstance(spec, dict)
                if not keep(spec):
                    continue
                if sparse_input and not spec["sparse"]:
                    skipped.append(f"{key} (needs dense input)")
                    continue
                if not importable(spec["_target_"]):
                    skipped.append(f"{key} ({spec['_target_']} is not installed)")
                    continue
                out.append(
                    Component(
                        key=str(key),
                        target=spec["_target_"],
                        name=spec["name"],
                        display=spec["display"],
                        sparse=spec["sparse"],
                        fixed=spec["fixed"],
                        default=spec["default"],
                        params=spec["params"],
                        cost=float(spec.get("cost", 1.0)),
                        encode_labels=bool(spec.get("encode_labels", False)),
                        scale_invariant=bool(spec.get("scale_invariant", False)),
                    )
                )
            return out

        estimators = read(
            "estimators",
            lambda s: (
                s["task"] == task
                and (allowed is None or s["name"] in allowed)
                and s["name"] not in blocked
            ),
        )
        preprocessors = read("preprocessors", lambda s: s["task"] in (None, task))
        for note in skipped:
            log.info("search space: skipping %s", note)
        if not estimators or not preprocessors:
            from .errors import ConfigError

            raise ConfigError(
                "search_space",
                "",
                f"no usable {'estimator' if not estimators else 'preprocessor'} "
                f"for this task and input; skipped: {', '.join(skipped) or 'none'}",
            )
        return cls(preprocessors, estimators, skipped)

    def candidate(
        self, pre: Component, est: Component, pre_params: dict, est_params: dict, origin: str
    ) -> Candidate:
        return Candidate(
            preprocessor=pre.key,
            preprocessor_target=pre.target,
            preprocessor_params={**pre.fixed, **pre_params},
            estimator=est.key,
            estimator_target=est.target,
            estimator_params={**est.fixed, **est_params},
            description=f"{pre.display} {est.display}",
            family=est.name,
            origin=origin,
            encode_labels=est.encode_labels,
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


def _make(target: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    cls = import_target(target)
    # YAML has no tuples; scikit-learn's validation wants them where lists appear
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    obj = cls(**kwargs)
    if "random_state" in obj.get_params() and "random_state" not in kwargs:
        obj.set_params(random_state=seed)
    return obj


def build_pipeline(
    candidate: Candidate,
    *,
    preprocess: bool,
    numeric: list[str],
    categorical: list[str],
    dataframe: bool,
    sparse_input: bool,
    seed: int,
    impute: bool = True,
    dates: list[str] | None = None,
) -> Pipeline:
    """The scikit-learn pipeline for a candidate: [prepare] -> scaler -> estimator.

    `prepare` (impute, one-hot encode, dates into numbers) is there when the data needs
    it: categorical or date columns, or missing values in the training or validation
    rows. Numeric data without any gets none, so no copy of it is made for nothing (such
    a model, like any plain scikit-learn estimator, refuses missing values at predict
    time).

    Only scikit-learn classes go in, so the pickled model loads wherever scikit-learn is
    installed, without this package (the date step's functions travel by value with the
    logged model).
    """
    dates = dates or []
    steps: list[tuple[str, Any]] = []
    # sparse input is numeric, its zeros are data
    if preprocess and not sparse_input and (impute or categorical or dates):
        steps.append(("prepare", _prepare(numeric, categorical, dataframe, dates)))
    steps.append(
        ("scale", _make(candidate.preprocessor_target, candidate.preprocessor_params, seed))
    )
    model = _make(candidate.estimator_target, candidate.estimator_params, seed)
    steps.append(("model", encode_labels(model) if candidate.encode_labels else model))
    return Pipeline(steps)


def encode_labels(model: BaseEstimator) -> BaseEstimator:
    """The classifier behind a label encoder, as one plain scikit-learn estimator.

    scikit-learn's VotingClassifier fits its members on the labels encoded as 0..k-1 and
    decodes what it predicts; with one member and soft voting its probabilities are that
    member's. So a classifier that takes labels 0..k-1 only (XGBoost) fits any labels,
    and also a cross-validation fold that lacks a class (its labels are then not
    0..k-1), while the pickled model stays scikit-learn classes and predicts the labels
    as given.
    """
    from sklearn.ensemble import VotingClassifier

    return VotingClassifier([("encoded", model)], voting="soft")


def encoded_member(model: Any) -> Any:
    """The fitted classifier inside `encode_labels`'s wrapper; any other model as is."""
    from sklearn.ensemble import VotingClassifier

    if (
        isinstance(model, VotingClassifier)
        and [name for name, _ in model.estimators] == ["encoded"]
        and hasattr(model, "estimators_")
    ):
        return model.estimators_[0]
    return model


def _prepare(
    numeric: list[str], categorical: list[str], dataframe: bool, dates: list[str] | None = None
) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    from .dates import date_parts, part_names

    num = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    if not dataframe:
        return num
    cat = Pipeline(
        [
            (
                "impute",
                SimpleImputer(strategy="constant", fill_value="missing", keep_empty_features=True),
            ),
            # unseen categories at predict time fall into the infrequent bucket (or all-zero)
            (
                "encode",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    max_categories=32,
                    min_frequency=5,
                    sparse_output=False,
                ),
            ),
        ]
    )
    parts = []
    if numeric:
        parts.append(("numeric", num, list(numeric)))
    if categorical:
        parts.append(("categorical", cat, list(categorical)))
    if dates:
        when = Pipeline(
            [
                ("parts", FunctionTransformer(date_parts, feature_names_out=part_names)),
                ("impute", clone(num)),
            ]
        )
        parts.append(("dates", when, list(dates)))
    return ColumnTransformer(
        parts, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=False
    )
