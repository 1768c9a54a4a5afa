"""Typed schemas for every config group: the config's vocabulary.

The YAML files in ``conf/`` extend these schemas (stored in Hydra's ConfigStore by
``config.store``), so a misspelt key or a value of the wrong type is refused by OmegaConf
at composition time. Below the experiment's setup the config travels as instances of
these classes (``config.settings``), not as a DictConfig. Rules that involve more than
one field live in ``config.validate``.

This module imports neither Hydra nor OmegaConf, so every layer may use its types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# OmegaConf's marker of a value the user must give ("???" in YAML and on the command line)
MISSING: Any = "???"


# --- compute -------------------------------------------------------------------------------
@dataclass
class _Compute:
    # which compute mode this is; set by the option, not by the user
    kind: str = MISSING
    # CPUs each iteration reserves (estimators run single-threaded inside)
    cpus_per_iteration: float = 1.0
    # memory each iteration (and the refit, the explanation) may use, in MB: Ray reserves
    # it, and past it the iteration is stopped and recorded MEMOUT (worker.memory_guard);
    # null = no reservation, and a limit derived from the node's memory and how many
    # iterations it runs at once
    memory_mb_per_iteration: int | None = None
    # times an iteration is rerun (elsewhere) when its node or worker process dies, and
    # as many when Ray's memory monitor kills it (Ray's task_oom_retries, engine.compute)
    max_retries: int = 2
    # extra keyword arguments for ray.init (runtime_env, namespace, object_store_memory, ...)
    init: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalCompute(_Compute):
    kind: str = "local"
    # CPUs the in-process Ray instance may use; null = all of this machine's
    num_cpus: int | None = None


@dataclass
class RayCompute(_Compute):
    kind: str = "ray"
    # address of the Ray head, HOST:PORT (or "auto" to find the local cluster)
    address: str = MISSING
    # name shown in logs and MLflow; checked against Azure's cluster-name rules
    cluster_name: str = "automl-cluster"
    # nodes that must have joined before the first iteration starts
    min_nodes: int = 1
    # how long to wait for min_nodes before giving up, in minutes
    timeout_minutes: float = 20.0
    # this machine's IP as the cluster knows it (Ray's _node_ip_address); null = Ray's guess
    node_ip_address: str | None = None


# the providers compute=cluster provisions on; fake is Ray's fake multi-node provider:
# nodes are processes on this machine (tests, trying a config out)
PROVIDERS = ("aws", "gcp", "azure", "kubernetes", "fake")
PRIORITIES = ("dedicated", "spot")


@dataclass
class ClusterCompute(_Compute):
    kind: str = "cluster"
    # the cluster's name in Ray's launcher and the cloud; checked against Azure's rules
    cluster_name: str = "automl-cluster"
    # where it runs: aws, gcp, azure, kubernetes, or fake (processes on this machine)
    provider: str = "fake"
    # the worker nodes' machine type (EC2 instance type, GCE machine type, Azure VM size;
    # the pod's resources on kubernetes); null = the provider's default in the launcher config
    node_type: str | None = None
    # CPUs of one worker node, as Ray schedules them
    cpus_per_node: int = 4
    # worker nodes kept up at all times, and at most this many while iterations wait
    min_nodes: int = 0
    max_nodes: int = 6
    # a worker node idle this long goes back to the provider
    idle_timeout_minutes: float = 5.0
    # dedicated, or spot (AWS spot, GCP preemptible, Azure low priority): cheaper, may vanish
    priority: str = "dedicated"
    # the region (AWS, Azure) or zone's region (GCP); null = the provider's default
    region: str | None = None
    # the GCP project (provider=gcp) or Azure resource group (provider=azure)
    project: str | None = None
    # leave the cluster up after the experiment (automl-ctl cluster down ends it)
    keep: bool = False
    # how long to wait for the head and min_nodes, in minutes
    timeout_minutes: float = 20.0
    # the head's port (GCS); fake nodes are told it, so several clusters may share a machine
    head_port: int = 6379
    # the head of a cluster that is up already (HOST:PORT, ray://HOST:10001 or "auto" on
    # the head itself); null = the one this name's state records, else brought up here
    address: str | None = None
    # where the rendered launcher configs and each cluster's state are kept
    state_dir: str = "~/.automl-runner/clusters"


# --- data ----------------------------------------------------------------------------------
@dataclass
class BuiltinData:
    # which data source this is; set by the option
    kind: str = "builtin"
    # a data set shipped with scikit-learn: digits, iris, wine, breast_cancer, diabetes
    name: str = MISSING


@dataclass
class ScriptData:
    # which data source this is; set by the option
    kind: str = "script"
    # path to a get_data.py whose get_data() returns {"X":..., "y":..., ...}
    path: str = MISSING
    # name used for the MLflow experiment; null = derived from the path
    name: str | None = None
    # get_data() (and importing the script) must return within this many minutes, and
    # within automl.experiment_timeout_minutes; null = no limit of its own
    timeout_minutes: float | None = 30.0


@dataclass
class FileData:
    # which data source this is; set by the option
    kind: str = "file"
    # path to a .csv or .parquet file
    path: str = MISSING
    # name of the column to predict
    target: str = MISSING
    # columns to drop before training (ids, leaks)
    drop_columns: list[str] = field(default_factory=list)
    # csv or parquet; null = from the file suffix
    format: str | None = None
    # name used for the MLflow experiment; null = the file's stem
    name: str | None = None
    # a second file with the same columns whose rows the search never sees: the best
    # model is scored on it (same format and target); null = none
    test_path: str | None = None


# --- automl --------------------------------------------------------------------------------
@dataclass
class AutoMLConfig:
    # classification or regression
    task: str = "classification"
    # number of search iterations (candidate pipelines) to run; null: 20 without a time
    # budget, no bound under experiment_timeout_minutes (docs/budgets.md, "Defaults")
    iterations: int | None = None
    # an iteration running longer than this is killed and recorded TIMEOUT
    iteration_timeout_minutes: float = 10.0
    # stop launching, cancel what runs, refit the best; null = no limit
    experiment_timeout_minutes: float | None = None
    # k of k-fold cross-validation; null to use validation_size instead
    n_cross_validations: int | None = 5
    # fraction held out for validation when n_cross_validations is null and no X_valid
    validation_size: float | None = None
    # share of the rows held out before the search (stratified for classification,
    # seeded) to score the best model on; null = none (or the data's own test set)
    test_size: float | None = None
    # metric the search optimises, with Azure AutoML's names
    primary_metric: str = "AUC_weighted"
    # impute missing values and one-hot encode string/categorical columns in the pipeline
    preprocess: bool = True
    # iterations in flight at once; null = as many as the cluster's CPUs hold
    max_concurrent_iterations: int | None = None
    # estimator families the search may use (names as in search_space); null = all
    allowed_models: list[str] | None = None
    # estimator families the search must not use
    blocked_models: list[str] = field(default_factory=list)
    # seed for CV splits and the search: same config and seed, same candidates
    seed: int = 0
    # console/log level: DEBUG, INFO, WARNING or ERROR
    verbosity: str = "INFO"
    # file that receives a DEBUG-level log of the whole experiment; null = none
    debug_log: str | None = None
    # explain the best model with SHAP after the search (settings in the explain group)
    model_explainability: bool = True
    # search strategy: tpe (a seeded portfolio of strong defaults, then a cost-aware
    # Optuna TPE search per family) or random (plain random sampling, a baseline)
    search: str = "tpe"
    # stop the search when the best score has not improved for early_stopping_patience
    # finished iterations (never during the portfolio of first tries); null: on for an
    # iteration budget, off under experiment_timeout_minutes (the budget is spent)
    enable_early_stopping: bool | None = None
    early_stopping_patience: int = 20
    # stop the search as soon as the best score reaches this value; null = never
    experiment_exit_score: float | None = None
    # after the search, a voting ensemble by greedy selection over out-of-fold
    # predictions, and a stacking ensemble; each wins only if it scores best
    enable_voting_ensemble: bool = True
    enable_stack_ensemble: bool = True
    # how many iterations the ensembles choose from (the best of each family first, then
    # the best of the rest); the voting ensemble's greedy selection rounds (members may be
    # picked more than once), and on how many random halves of those iterations the
    # selection is run and its weights averaged (1: once, over all of them)
    ensemble_candidates: int = 10
    ensemble_size: int = 20
    ensemble_bags: int = 20
    # continue an interrupted experiment: its MLflow parent run id; null = a new experiment
    resume: str | None = None
    # data guardrails before the search (data/guardrails.py): warn (an ALERTED check is
    # shown and logged, the experiment goes on), strict (it is an error), off (none run)
    guardrails: str = "warn"


# --- search space --------------------------------------------------------------------------
@dataclass
class ParamSpec:
    # int, float or categorical
    type: str = MISSING
    # lower bound (int/float)
    low: float | None = None
    # upper bound (int/float)
    high: float | None = None
    # sample on a log scale (int/float)
    log: bool = False
    # allowed values (categorical)
    choices: list[Any] | None = None


@dataclass
class ComponentSpec:
    # import path of the scikit-learn compatible class
    _target_: str = MISSING
    # family name used by allowed_models / blocked_models
    name: str = MISSING
    # short text shown in the PIPELINE column
    display: str = MISSING
    # classification, regression, or null for a preprocessor usable by both
    task: str | None = None
    # whether the component accepts scipy sparse input
    sparse: bool = True
    # arguments always passed, never searched
    fixed: dict[str, Any] = field(default_factory=dict)
    # the cheap, strong starting configuration tried first
    default: dict[str, Any] = field(default_factory=dict)
    # hyperparameter ranges the search samples from
    params: dict[str, ParamSpec] = field(default_factory=dict)
    # the class takes class labels 0..k-1 only (XGBoost): it is fitted behind a label
    # encoder, so any labels (strings, say) work and predictions come back as given
    encode_labels: bool = False
    # rough cost of the default configuration relative to a linear model; the portfolio
    # tries cheap families first (measured durations take over once known)
    cost: float = 1.0
    # the model is the same whatever monotonic per-feature scaling comes before it (trees):
    # the TPE search keeps the default preprocessor for it instead of searching one
    scale_invariant: bool = False
    # the estimator's keyword for the names of the categorical columns (CatBoost:
    # cat_features): it then gets them as integer codes, with no scaling step before it,
    # and handles them itself, instead of one-hot columns; null: one-hot encoded
    native_categorical: str | None = None


@dataclass
class SearchSpaceConfig:
    # preprocessing steps (scalers), one of which runs before the estimator
    preprocessors: dict[str, ComponentSpec] = field(default_factory=dict)
    # estimator families; those whose task matches automl.task are searched
    estimators: dict[str, ComponentSpec] = field(default_factory=dict)


# --- tracking ------------------------------------------------------------------------------
@dataclass
class TrackingConfig:
    # local (embedded SQLite store) or server (an MLflow tracking server)
    kind: str = "local"
    # tracking URI for kind=server, e.g. http://127.0.0.1:5000; unused for local
    uri: str | None = None
    # folder of the embedded store (database and artifacts), relative to the working dir
    store_dir: str = "outputs/mlflow"
    # MLflow experiment name; null = automl-<data set name>
    experiment_name: str | None = None
    # how long the experiment goes on while the tracking server does not answer, its
    # writes kept in a journal under the run's output folder (docs/faults.md)
    outage_minutes: float = 30.0
    # register the best model in MLflow's model registry under this name, with the alias
    # `champion`; null = not registered
    register_model: str | None = None


# --- explain -------------------------------------------------------------------------------
# the explainers explain.explainer names
EXPLAINERS = ("auto", "tree", "linear", "kernel", "permutation")


@dataclass
class ExplainConfig:
    # auto (tree for tree models, linear for linear ones, else kernel), tree, linear, kernel or permutation
    explainer: str = "auto"
    # rows explained: X_valid when the data script gives it, else a seeded sample of X
    rows: int = 100
    # training rows the explainer compares against (its background)
    background_size: int = 100
    # the kernel explainer summarises the background into this many k-means centres
    kernel_kmeans: int = 10
    # at most this many rows for the model-agnostic explainers (kernel, permutation)
    kernel_rows: int = 30
    # model evaluations per row for the kernel explainer; null = SHAP's default
    kernel_nsamples: int | None = 1024
    # a winning ensemble: auto (the ensemble itself, its kernel members' work bounded by
    # ensemble_kernel_seconds: fewer coalitions per row, or past the least useful number
    # its leading member), always (the ensemble, unbounded), or leading
    ensemble: str = "auto"
    # explain.ensemble=auto: about how many compute seconds the kernel explainer may spend
    # on a winning ensemble's members (priced before it starts; the members run as
    # parallel tasks, so 20 is about 10 s on 2 free CPUs); null = no bound
    ensemble_kernel_seconds: float | None = 20.0
    # time budget of the explanation, separate from the iteration timeout
    timeout_minutes: float = 5.0
    # explain an already finished experiment (its parent run id) instead of running one
    only: str | None = None


@dataclass
class RunnerConfig:
    # where iterations run: local, ray or cluster
    compute: Any = MISSING
    # where the data comes from: a builtin set, script or file
    data: Any = MISSING
    # the AutoML settings (task, metric, budgets, CV, concurrency)
    automl: AutoMLConfig = field(default_factory=AutoMLConfig)
    # candidate preprocessors and estimators
    search_space: SearchSpaceConfig = field(default_factory=SearchSpaceConfig)
    # where results are logged
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # how the best model is explained
    explain: ExplainConfig = field(default_factory=ExplainConfig)


# the schema of each config group option, as stored under schema/ in the ConfigStore
SCHEMAS: dict[str, type] = {
    "compute/local": LocalCompute,
    "compute/ray": RayCompute,
    "compute/cluster": ClusterCompute,
    "data/builtin": BuiltinData,
    "data/script": ScriptData,
    "data/file": FileData,
    "search_space": SearchSpaceConfig,
}
ComputeConfig = LocalCompute | RayCompute | ClusterCompute
DataConfig = BuiltinData | ScriptData | FileData
