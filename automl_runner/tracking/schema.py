"""Every MLflow name one process writes and another reads: the runner's protocol over MLflow.

Resume, status, ``automl-ctl``, a submitted job, the sweep summary and users' own
queries read these from the store; nothing else in the package spells them. Layout and
meaning: docs/mlflow-layout.md.
"""

from __future__ import annotations

# --- every run the runner creates ---------------------------------------------------------
KIND = "automl.kind"  # what the run is: one of the KIND_* values below
KIND_EXPERIMENT = "experiment"  # an experiment's parent run
KIND_ITERATION = "iteration"  # a search iteration's child run
KIND_ENSEMBLE = "ensemble"  # an ensemble iteration's child run
KIND_SWEEP = "sweep"  # a multirun's summary run (experiment SWEEP_EXPERIMENT)
PARENT = "mlflow.parentRunId"  # MLflow's own tag nesting a child run under its parent

# --- the parent run: what the experiment is --------------------------------------------------
PRIMARY_METRIC = "automl.primary_metric"  # the metric the search optimises
OVERRIDES = "automl.overrides"  # the command-line overrides, space-separated ("(none)")
DATA = "automl.data"  # the data set's name; its presence says the data summary is logged
RESUMES = "automl.resumes"  # how many times the experiment was resumed
STOPPED_EARLY = "automl.stopped_early"  # why the search ended before its budget
ERROR = "automl.error"  # why a submitted experiment failed before its driver started
# the parent run's params: the flattened config, among them the budget (read by status for
# runs whose driver never wrote the budget tags) and the data summary under this prefix
ITERATIONS_PARAM = "automl.iterations"  # automl.iterations as a param
TIMEOUT_PARAM = "automl.experiment_timeout_minutes"  # automl.experiment_timeout_minutes
DATA_SUMMARY_PARAM = "data_summary."  # prefix of the data summary's params
# artifacts
CONFIG_ARTIFACT = "config/config.yaml"  # the resolved config (resume and explain.only read it)
OVERRIDES_ARTIFACT = "config/overrides.txt"  # the overrides, one per line
DATA_SUMMARY_ARTIFACT = "data_summary.json"  # rows, features, classes, missing values
LEADERBOARD_ARTIFACT = "leaderboard.csv"  # every iteration, best first
# the best model's evaluation on the parent run: charts, and the test set's predictions
EVALUATION_FOLDER = "evaluation"
TEST_PREDICTIONS_ARTIFACT = "evaluation/test_predictions.csv"
# the registered model the best model became (tracking.register_model): "name/version"
REGISTERED_MODEL = "automl.registered_model"
# the alias the registered best model gets
CHAMPION = "champion"
# MLflow's own: the run's description, Markdown, at the top of the run page
DESCRIPTION = "mlflow.note.content"
# the evaluation's source: "test" (held-out rows) or "out-of-fold" (the best's validation)
EVALUATED_ON = "automl.evaluated_on"
GUARDRAILS_ARTIFACT = "guardrails.json"  # every data guardrail: name, status, detail, columns
# tag prefix of an ALERTED guardrail: + its name, valued "ALERTED: <detail>"
GUARDRAIL = "automl.guardrail."


def guardrail_tag(name: str) -> str:
    """The tag of an ALERTED data guardrail (data/guardrails.py names them)."""
    return f"{GUARDRAIL}{name}"


def resume_overrides_artifact(resume: int) -> str:
    """The overrides of the `resume`-th resume, one per line."""
    return f"config/overrides-resume-{resume}.txt"


# --- the parent run: its outcome -----------------------------------------------------------
BEST_ITERATION = "automl.best_iteration"  # number of the best iteration (so far)
BEST_PIPELINE = "automl.best_pipeline"  # its pipeline, as the console shows it
BEST_RUN_ID = "automl.best_run_id"  # its child run
BEST_MODEL_URI = "automl.best_model_uri"  # the refit best model, models:/m-...
MODEL_PARENT = "automl.parent_run_id"  # on the logged model: the parent run it belongs to
DURATION = "duration_seconds"  # metric: the whole experiment (parent) or one iteration (child)
# what a candidate costs (child runs, and the leaderboard's columns): a fold's fit,
# predicting 1,000 rows, the pickled model
FIT_SECONDS = "fit_seconds"
PREDICT_SECONDS_PER_1000 = "predict_seconds_per_1000_rows"
MODEL_BYTES = "model_bytes"
SEARCH_SECONDS = "search_seconds"  # metric: the search loop, first launch to last result
# metrics iterations_<count>: search iterations by status, ensembles, and (live) running
COUNTS = ("completed", "failed", "timed_out", "cancelled", "memout", "ensembles")


def count_metric(count: str) -> str:
    return f"iterations_{count}"


def best_metric(metric: str) -> str:
    """The best score so far, stepped by finished iteration."""
    return f"best_{metric}"


def test_metric(metric: str) -> str:
    """The best model's score on the test set (parent run and best iteration's run)."""
    return f"test_{metric}"


def final_metric(metric: str) -> str:
    """The best score when the experiment ended (what a sweep compares)."""
    return f"best_{metric}_final"


# --- the parent run: live progress, kept by the driver ---------------------------------------
STATE = "automl.state"  # one of ACTIVE while a driver works, then the run's end status
# the values of STATE while the experiment is (or is about to be) at work
SUBMITTED = "SUBMITTED"  # created by automl-ctl submit; its driver has not started
SEARCHING = "RUNNING"  # the search loop runs
STOPPING = "STOPPING"  # a stop request or Ctrl-C: what runs is being cancelled
ENSEMBLING = "ENSEMBLING"  # the ensembles are being built
REFITTING = "REFITTING"  # the best is refit, logged and explained
ACTIVE = (SUBMITTED, SEARCHING, STOPPING, ENSEMBLING, REFITTING)
RUNNING = "automl.running"  # JSON [[iteration, pipeline, started (epoch s)], ...]
DRIVER = "automl.driver"  # host:pid of the driver writing this run
HEARTBEAT = "automl.heartbeat"  # epoch seconds of the driver's latest write
SESSION_STARTED = "automl.session_started"  # epoch seconds this driver started
ELAPSED_BEFORE = "automl.elapsed_before"  # seconds spent by earlier drivers (resumed runs)
BUDGET_ITERATIONS = "automl.budget.iterations"  # automl.iterations of the running driver
BUDGET_MINUTES = "automl.budget.minutes"  # automl.experiment_timeout_minutes ("" = none)
JOB_ID = "automl.job_id"  # the Ray job running the driver (submitted experiments)
JOB_ADDRESS = "automl.job_address"  # the Ray Jobs API it was submitted to
JOB_RUN_ID = "automl.run_id"  # in a submitted Ray job's metadata: its parent run

# --- the parent run: requests, set by anyone, answered by the driver in the same tag ---------
STOP = "automl.control.stop"  # requested -> stopping
CANCEL = "automl.control.cancel."  # + iteration number: requested -> cancelled | ignored: why
REQUESTED = "requested"  # the value that asks


def cancel_tag(iteration: int) -> str:
    return f"{CANCEL}{iteration}"


def is_request(key: str) -> bool:
    return key == STOP or key.startswith(CANCEL)


# --- the parent run: the explanation -------------------------------------------------------
EXPLANATION = "automl.explanation"  # ok, or failed: / timeout: with the reason
EXPLAINER = "automl.explainer"  # the SHAP explainer used
EXPLAINED_MODEL = "automl.explained_model"  # the model explained (an ensemble: its members)
TOP_FEATURES = "automl.top_features"  # the most important columns, comma-separated
EXPLANATION_FOLDER = "explanation"  # artifacts: summary.json, shap_values.csv, plots
MEMBERS_FOLDER = "members"  # under it, an ensemble's: <iteration>/importance.csv
IMPORTANCE_METRIC = "importance."  # metric prefix: + column, its mean |SHAP value|

# --- a child run: one iteration -------------------------------------------------------------
ITERATION = "automl.iteration"  # its number
STATUS = "automl.status"  # COMPLETED, FAILED, TIMEOUT, CANCELLED or MEMOUT
PIPELINE = "automl.pipeline"  # as the console shows it
NODE = "automl.node"  # host/Ray node id that ran it
ORIGIN = "automl.origin"  # portfolio, tpe, random or ensemble
FAMILY = "automl.family"  # the estimator family (allowed_models' names)
CANDIDATE = "automl.candidate"  # JSON of every field of its candidate (resume reads it)
FOLD_SCORES = "automl.fold_scores"  # JSON metric -> per-fold scores (resume reads it)
# a tag value past MLflow's length limit is this prefix + the artifact that holds it
LONG_TAG_PREFIX = "@"


def fold_metric(metric: str, fold: int) -> str:
    return f"{metric}_fold_{fold}"


def std_metric(metric: str) -> str:
    return f"{metric}_std"


# --- sweeps ----------------------------------------------------------------------------------
SWEEP_EXPERIMENT = "automl-sweeps"  # the MLflow experiment of the sweeps' summary runs
SWEEP_DIR = "automl.sweep_dir"  # on a job's parent run and the sweep run: the Hydra sweep dir
SWEEP_JOB = "automl.sweep_job"  # on a job's parent run: its job number
SWEEP_RUN_ID = "automl.sweep_run_id"  # on a job's parent run: the sweep's summary run
SWEEP_JOBS = "automl.jobs"  # on the sweep run: the jobs' parent runs, comma-separated
SWEEP_SUMMARY_ARTIFACT = "sweep_summary.csv"  # the sweep's table
