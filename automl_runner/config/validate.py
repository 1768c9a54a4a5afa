"""Semantic checks that span fields, run once right after composition."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..metrics import METRICS
from .schema import (
    EXPLAINERS,
    PRIORITIES,
    PROVIDERS,
    AutoMLConfig,
    BuiltinData,
    ClusterCompute,
    ComputeConfig,
    DataConfig,
    ExplainConfig,
    FileData,
    LocalCompute,
    RunnerConfig,
    ScriptData,
    TrackingConfig,
)

TASKS = ("classification", "regression")
BUILTIN_SETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
REGRESSION_SETS = ("diabetes",)
VERBOSITY = ("DEBUG", "INFO", "WARNING", "ERROR")
SEARCHES = ("tpe", "random")
GUARDRAILS = ("warn", "strict", "off")
PARAM_TYPES = ("int", "float", "categorical")
# Azure's rule for compute names: fewer than 64 characters, none of these.
# a Ray head: HOST:PORT, ray://HOST:PORT, or auto (the cluster this machine is part of)
_ADDRESS = r"auto|(ray://)?[\w.\-]+:\d+"
_CLUSTER_FORBIDDEN = set("`~!@#$%^&*()=+_[]{}\\|;:'\",<>/?")


def validate(cfg: RunnerConfig) -> None:
    """Raise ConfigError (one line: key, value, what is allowed) for the first bad value."""
    _check_compute(cfg.compute)
    _check_data(cfg.data, cfg.automl.task)
    _check_automl(cfg.automl)
    _check_search_space(cfg)
    _check_tracking(cfg.tracking)
    _check_explain(cfg.explain)


def check_cluster_name(name: str) -> None:
    bad = sorted(set(name) & _CLUSTER_FORBIDDEN)
    if not name or len(name) >= 64 or bad or name.strip() != name:
        detail = f"contains {' '.join(bad)}" if bad else f"has {len(name)} characters"
        raise ConfigError(
            "compute.cluster_name",
            name,
            f"{detail}; allowed: 1 to 63 characters, none of "
            "` ~ ! @ # $ % ^ & * ( ) = + _ [ ] { } \\ | ; : ' \" , < > / ?",
        )


def _check_compute(c: ComputeConfig) -> None:
    if c.cpus_per_iteration <= 0:
        raise ConfigError("compute.cpus_per_iteration", c.cpus_per_iteration, "must be > 0")
    if c.memory_mb_per_iteration is not None and c.memory_mb_per_iteration <= 0:
        raise ConfigError(
            "compute.memory_mb_per_iteration", c.memory_mb_per_iteration, "must be > 0 or null"
        )
    if c.max_retries < 0:
        raise ConfigError("compute.max_retries", c.max_retries, "must be >= 0")
    if isinstance(c, LocalCompute):
        if c.num_cpus is not None and c.num_cpus < 1:
            raise ConfigError("compute.num_cpus", c.num_cpus, "must be >= 1 or null (all)")
        return
    check_cluster_name(c.cluster_name)
    if isinstance(c, ClusterCompute):
        _check_cluster(c)
        return
    if not re.fullmatch(_ADDRESS, c.address):
        raise ConfigError("compute.address", c.address, "expected HOST:PORT of the Ray head")
    if c.min_nodes < 1:
        raise ConfigError("compute.min_nodes", c.min_nodes, "must be >= 1")
    if c.timeout_minutes <= 0:
        raise ConfigError("compute.timeout_minutes", c.timeout_minutes, "must be > 0")


def _check_cluster(c: ClusterCompute) -> None:
    if c.provider not in PROVIDERS:
        raise ConfigError("compute.provider", c.provider, f"allowed: {', '.join(PROVIDERS)}")
    if c.priority not in PRIORITIES:
        raise ConfigError("compute.priority", c.priority, f"allowed: {', '.join(PRIORITIES)}")
    if c.cpus_per_node < 1:
        raise ConfigError("compute.cpus_per_node", c.cpus_per_node, "must be >= 1")
    if c.cpus_per_iteration > c.cpus_per_node:
        raise ConfigError(
            "compute.cpus_per_iteration",
            c.cpus_per_iteration,
            f"must be <= compute.cpus_per_node ({c.cpus_per_node}): an iteration runs on one node",
        )
    if c.min_nodes < 0:
        raise ConfigError("compute.min_nodes", c.min_nodes, "must be >= 0")
    if c.max_nodes < max(1, c.min_nodes):
        raise ConfigError(
            "compute.max_nodes",
            c.max_nodes,
            f"must be >= 1 and >= compute.min_nodes ({c.min_nodes})",
        )
    if c.idle_timeout_minutes <= 0:
        raise ConfigError("compute.idle_timeout_minutes", c.idle_timeout_minutes, "must be > 0")
    if c.timeout_minutes <= 0:
        raise ConfigError("compute.timeout_minutes", c.timeout_minutes, "must be > 0")
    if not 1 <= c.head_port <= 65535:
        raise ConfigError("compute.head_port", c.head_port, "must be a port from 1 to 65535")
    if c.address is not None and not re.fullmatch(_ADDRESS, c.address):
        raise ConfigError(
            "compute.address", c.address, "expected HOST:PORT of the Ray head, or null"
        )
    if c.provider == "gcp" and not c.project:
        raise ConfigError("compute.project", c.project, "provider=gcp needs the GCP project id")
    if c.provider == "azure" and not c.project:
        raise ConfigError(
            "compute.project", c.project, "provider=azure needs the Azure resource group"
        )
    if c.provider == "kubernetes" and not re.fullmatch(
        r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", c.cluster_name
    ):
        raise ConfigError(
            "compute.cluster_name",
            c.cluster_name,
            "provider=kubernetes names the RayCluster with it: lowercase letters, digits and -",
        )
    if c.provider in ("fake", "kubernetes") and c.priority == "spot":
        # kubernetes: spot capacity is the node pool's setting, not the pods'
        raise ConfigError(
            "compute.priority",
            c.priority,
            f"provider={c.provider} takes dedicated only; spot is for aws, gcp and azure",
        )
        raise ConfigError("compute.priority", c.priority, "provider=fake has dedicated nodes only")


def _check_data(d: DataConfig, task: str) -> None:
    if isinstance(d, BuiltinData):
        if d.name not in BUILTIN_SETS:
            raise ConfigError("data.name", d.name, f"allowed: {', '.join(BUILTIN_SETS)}")
        if (d.name in REGRESSION_SETS) != (task == "regression"):
            want = "regression" if d.name in REGRESSION_SETS else "classification"
            raise ConfigError(
                "automl.task", task, f"data={d.name} is a {want} set; use automl={want}"
            )
        return
    path = Path(d.path).expanduser()
    if not path.is_file():
        raise ConfigError("data.path", d.path, f"no such file (looked in {Path.cwd()})")
    if d.kind == "script" and path.suffix != ".py":
        raise ConfigError("data.path", d.path, "data=script needs a .py file defining get_data()")
    if isinstance(d, ScriptData) and d.timeout_minutes is not None and d.timeout_minutes <= 0:
        raise ConfigError("data.timeout_minutes", d.timeout_minutes, "must be > 0 or null")
    if isinstance(d, FileData):
        fmt = d.format or path.suffix.lower().lstrip(".")
        if fmt not in ("csv", "parquet"):
            raise ConfigError(
                "data.format" if d.format else "data.path",
                d.format or d.path,
                "allowed: csv or parquet (from the file suffix unless data.format is set)",
            )


def _check_automl(a: AutoMLConfig) -> None:
    if a.task not in TASKS:
        raise ConfigError("automl.task", a.task, f"allowed: {', '.join(TASKS)}")
    allowed = [m for m, spec in METRICS.items() if spec.task == a.task]
    if a.primary_metric not in allowed:
        raise ConfigError(
            "automl.primary_metric", a.primary_metric, f"allowed for {a.task}: {', '.join(allowed)}"
        )
    if a.iterations is not None and a.iterations < 1:
        raise ConfigError("automl.iterations", a.iterations, "must be >= 1 or null")
    for key in ("iteration_timeout_minutes", "experiment_timeout_minutes"):
        value = getattr(a, key)
        if value is not None and value <= 0:
            raise ConfigError(
                f"automl.{key}", value, "must be > 0" + (" or null" if "exp" in key else "")
            )
    if a.n_cross_validations is not None and a.validation_size is not None:
        raise ConfigError(
            "automl.validation_size",
            a.validation_size,
            "set either automl.n_cross_validations or automl.validation_size, not both",
        )
    if a.n_cross_validations is None and a.validation_size is None:
        raise ConfigError(
            "automl.n_cross_validations", None, "set it (>= 2) or set automl.validation_size"
        )
    if a.n_cross_validations is not None and a.n_cross_validations < 2:
        raise ConfigError("automl.n_cross_validations", a.n_cross_validations, "must be >= 2")
    if a.validation_size is not None and not 0 < a.validation_size < 1:
        raise ConfigError("automl.validation_size", a.validation_size, "must be in (0, 1)")
    if a.test_size is not None and not 0 < a.test_size < 1:
        raise ConfigError("automl.test_size", a.test_size, "must be in (0, 1), or null for none")
    if a.max_concurrent_iterations is not None and a.max_concurrent_iterations < 1:
        raise ConfigError(
            "automl.max_concurrent_iterations", a.max_concurrent_iterations, "must be >= 1 or null"
        )
    if str(a.verbosity).upper() not in VERBOSITY:
        raise ConfigError("automl.verbosity", a.verbosity, f"allowed: {', '.join(VERBOSITY)}")
    if a.search not in SEARCHES:
        raise ConfigError("automl.search", a.search, f"allowed: {', '.join(SEARCHES)}")
    if a.guardrails not in GUARDRAILS:
        raise ConfigError("automl.guardrails", a.guardrails, f"allowed: {', '.join(GUARDRAILS)}")
    for key in ("early_stopping_patience", "ensemble_candidates", "ensemble_size", "ensemble_bags"):
        if getattr(a, key) < 1:
            raise ConfigError(f"automl.{key}", getattr(a, key), "must be >= 1")


def _check_search_space(cfg: RunnerConfig) -> None:
    task = cfg.automl.task
    space = cfg.search_space
    for group in ("preprocessors", "estimators"):
        for key, comp in getattr(space, group).items():
            if comp.task is not None and comp.task not in TASKS:
                raise ConfigError(
                    f"search_space.{group}.{key}.task",
                    comp.task,
                    f"allowed: {', '.join(TASKS)} or null",
                )
            for pname, p in comp.params.items():
                where = f"search_space.{group}.{key}.params.{pname}"
                if p.type not in PARAM_TYPES:
                    raise ConfigError(f"{where}.type", p.type, f"allowed: {', '.join(PARAM_TYPES)}")
                if p.type == "categorical":
                    if not p.choices:
                        raise ConfigError(
                            f"{where}.choices",
                            p.choices,
                            "a categorical range needs a non-empty list",
                        )
                elif p.low is None or p.high is None or p.low > p.high:
                    raise ConfigError(
                        f"{where}", f"low={p.low} high={p.high}", "needs numbers with low <= high"
                    )
                elif p.log and p.low <= 0:
                    raise ConfigError(f"{where}.low", p.low, "a log-scale range needs low > 0")
    names = sorted({c.name for c in space.estimators.values() if c.task == task})
    if not names:
        raise ConfigError("search_space.estimators", "", f"has no family with task {task}")
    for key in ("allowed_models", "blocked_models"):
        for name in getattr(cfg.automl, key) or []:
            if name not in names:
                raise ConfigError(f"automl.{key}", name, f"allowed for {task}: {', '.join(names)}")
    usable = set(cfg.automl.allowed_models or names) - set(cfg.automl.blocked_models)
    if not usable:
        raise ConfigError(
            "automl.blocked_models",
            list(cfg.automl.blocked_models),
            "blocks every allowed family; leave at least one of " + ", ".join(names),
        )
    if not space.preprocessors:
        raise ConfigError("search_space.preprocessors", "{}", "needs at least one preprocessor")


def _check_tracking(t: TrackingConfig) -> None:
    if t.kind not in ("local", "server"):
        raise ConfigError("tracking.kind", t.kind, "allowed: local, server")
    if t.outage_minutes < 0:
        raise ConfigError("tracking.outage_minutes", t.outage_minutes, "must be >= 0")
    if t.register_model is not None and not str(t.register_model).strip():
        raise ConfigError("tracking.register_model", t.register_model, "a model name, or null")
    if t.kind == "server" and not re.match(
        r"^(https?|databricks|file|sqlite|postgresql|mysql)", t.uri or ""
    ):
        raise ConfigError(
            "tracking.uri", t.uri, "expected a tracking URI such as http://127.0.0.1:5000"
        )
    if t.kind == "server" and str(t.uri).startswith(("http://", "https://")):
        parts = urlsplit(str(t.uri))
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:  # not a number, or over 65535
            port_ok = False
        if not parts.hostname or not port_ok:
            raise ConfigError(
                "tracking.uri",
                t.uri,
                "expected a host and a port from 1 to 65535, as in http://127.0.0.1:5000",
            )


def _check_explain(e: ExplainConfig) -> None:
    if e.explainer not in EXPLAINERS:
        raise ConfigError("explain.explainer", e.explainer, f"allowed: {', '.join(EXPLAINERS)}")
    if e.ensemble not in ("auto", "always", "leading"):
        raise ConfigError("explain.ensemble", e.ensemble, "allowed: auto, always, leading")
    for key in ("rows", "background_size", "kernel_kmeans", "kernel_rows"):
        if getattr(e, key) < 1:
            raise ConfigError(f"explain.{key}", getattr(e, key), "must be >= 1")
    if e.kernel_nsamples is not None and e.kernel_nsamples < 1:
        raise ConfigError("explain.kernel_nsamples", e.kernel_nsamples, "must be >= 1 or null")
    if e.ensemble_kernel_seconds is not None and e.ensemble_kernel_seconds <= 0:
        raise ConfigError(
            "explain.ensemble_kernel_seconds", e.ensemble_kernel_seconds, "must be > 0 or null"
        )
    if e.timeout_minutes <= 0:
        raise ConfigError("explain.timeout_minutes", e.timeout_minutes, "must be > 0")
