"""Quality at equal budget: this runner at its defaults, FLAML and AutoGluon (issue 25).

    pip install '.[bench]'                                   # the runner and FLAML
    python -m venv ag && ag/bin/pip install -r benchmarks/requirements-autogluon.txt
    python benchmarks/quality.py [--budgets 60 300] [--seeds 0 1 2] [--sets all|short|a,b]
        [--systems runner,flaml,autogluon] [--autogluon-python ag/bin/python]
        [--out benchmarks/results/quality.csv] [--resume] [--commit SHA] [--kill-after S]

Protocol of ../shared/benchmarks/SETS.md, on every set it lists (public_sets.SETS: 20
sets plus digits): 25% of the rows are held out as a test set
(`train_test_split(test_size=0.25, random_state=0)`, stratified for classification);
each system searches on the rest under the same wall-clock budget, one after another,
each in a fresh process pinned to the same `--cpus` CPUs (2) with `sched_setaffinity`
(Ray, its workers and every thread inherit it; the `cpus_seen` column is the union of
the CPUs the job and all its descendants were allowed, sampled every second, so an
escape would show):

* runner: this project at its SHIPPED DEFAULTS apart from the budget, the metric and
  the CPUs: `data=file` on a Parquet copy of the training rows,
  `automl.experiment_timeout_minutes=<budget>/60` (under a time budget the defaults
  bound no iterations and stop on no patience), AUC_weighted or r2_score,
  `compute.num_cpus=2` (2 iterations at a time, the default), MLflow into a throwaway
  store, and no explanation (`automl.model_explainability=false`: it runs after the
  model is final, so it changes the wall time only, not the model). Early stopping,
  the search and the ensembles are at their defaults: users run the defaults.
* runner-no-early-stop: a labelled variant, the same with
  `automl.enable_early_stopping=false`. It is an extra row next to the defaults' row,
  never the headline and never in the targets (SETS.md: a figure measured with a default
  changed is reported next to the default's, never instead of it).
* runner-one-bag: a variant, `automl.ensemble_bags=1` (the voting ensemble's one greedy
  selection over the whole pool instead of bagged halves; not run unless asked for).
* random: a variant, `automl.search=random` with both ensembles off (not run unless
  asked for with --systems).
* flaml: `flaml.AutoML().fit(...)` with its default learners, `eval_method="cv"`,
  `n_splits=5`, `n_jobs=2`, `time_budget` = the budget.
* autogluon: `TabularPredictor(eval_metric=...).fit(train, time_limit=<budget>,
  num_cpus=2)` with the default preset, in a child process run by the AutoGluon
  interpreter: `--autogluon-python`, else the environment variable
  AUTOML_BENCH_AUTOGLUON_PYTHON, else this interpreter if it has autogluon.tabular;
  with none of them the system is skipped with a line saying so (its targets then read
  "not measured"). AutoGluon pins pandas < 2.4 and pyarrow < 25, older than what
  `pip install .` gives the runner, so it has its own environment,
  benchmarks/requirements-autogluon.txt (exact pins, no torch), rather than the bench
  extra: in the extra it would downgrade the runner being measured. AutoGluon validates
  by its own holdout (or bagging in the larger presets), not our 5-fold CV, and keeps
  its own fixed seed (the seed column only repeats its run).

Metrics: weighted one-vs-rest ROC AUC for classification (plain ROC AUC for two
classes), R^2 for regression; each system searches on that metric (FLAML
`roc_auc`/`roc_auc_ovr_weighted`/`r2`, AutoGluon `roc_auc`/`roc_auc_ovr_weighted`/`r2`)
and the script computes the test score of every system alike from the final model's
class probabilities or predictions on the test rows.

Each (set, budget, seed, system) gives one CSV row as soon as it is measured:
test score; CV score (the runner's best mean over 5 folds, FLAML's `1 - best_loss`,
AutoGluon's validation score of its best model); configurations tried (the runner's
completed search iterations, FLAML's trials, AutoGluon's models trained = leaderboard
rows); time from the start of the search to the final best (AutoGluon: when its best
model finished fitting, from a fit callback); wall time of the whole fit; budget used
(every system's wall over the budget: what a user who gave the budget waited; the
runner's wall runs from `automl_runner.run` to the best model logged, Ray's start,
the ensembles and the refit included, and its `search_seconds` are kept apart). A job past `--kill-after` seconds (default twice its
budget plus 300) is killed with its process group and recorded as a timeout.

The report cannot flatter:

* it uses the rows of ONE commit (HEAD's, `+dirty` when automl_runner/, conf/ or
  benchmarks/ have uncommitted changes; the automl_runner imported must be this
  checkout's, or the script stops; with `--commit SHA` it measures nothing and
  reports SHA's rows; rows of other commits in the CSV are counted and ignored), the
  systems side by side;
* the latest row of each (set, budget, seed, system) wins, so an older ok row never
  hides a newer failure; `--resume` reuses only ok rows of the same commit;
* a set where the runner errored or timed out (on any seed) counts as a LOSS in every
  target, never drops out of the pairs; one where only a baseline did counts as a
  runner win (that baseline's user got no model in the budget), and says so.

Targets (issue 25's "Done means", medians over seeds, runner at its defaults):
60 s: runner test >= FLAML's on >= 80% of the sets and never more than 0.005 below;
300 s: >= FLAML's on >= 80% of the sets and median over sets of runner - AutoGluon >= 0;
the runner's budget used >= 90% of 60 s on every set whose CV score is below the
metric's maximum (1).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from public_sets import SETS, SHORT, load  # noqa: E402

# extra overrides of the runner-based systems (on top of the shipped defaults)
RUNNER_SYSTEMS: dict[str, list[str]] = {
    "runner": [],
    "runner-no-early-stop": ["automl.enable_early_stopping=false"],
    # the voting ensemble's one greedy selection over the whole pool, not bagged halves
    "runner-one-bag": ["automl.ensemble_bags=1"],
    "random": [
        "automl.search=random",
        "automl.enable_voting_ensemble=false",
        "automl.enable_stack_ensemble=false",
    ],
}
BASELINES = ("flaml", "autogluon")
SYSTEMS = [*RUNNER_SYSTEMS, *BASELINES]
LABELS = {
    "runner": "defaults",
    "runner-no-early-stop": "VARIANT early stopping off; not the headline",
    "runner-one-bag": "VARIANT automl.ensemble_bags=1; not the headline",
    "random": "VARIANT random search, no ensembles",
    "flaml": "defaults",
    "autogluon": "default preset",
}
AUTOGLUON_ENV = "AUTOML_BENCH_AUTOGLUON_PYTHON"
FIELDS = [
    "set",
    "task",
    "budget",
    "seed",
    "system",
    "status",
    "test_score",
    "cv_score",
    "configs",
    "ensembles",
    "failed",
    "time_to_best",
    "setup_seconds",
    "search_seconds",
    "wall_seconds",
    "budget_used",
    "process_seconds",
    "best_model",
    "train_rows",
    "test_rows",
    "cpus",
    "cpus_seen",
    "python",
    "commit",
    "finished_at",
    "error",
]
PROTOCOL_SETS = len(SETS)
WIN_SHARE = 0.8  # of the sets, at 60 s and at 300 s against FLAML
MARGIN = 0.005  # never more than this below FLAML at 60 s
BUDGET_SHARE = 0.9  # of a 60 s budget, where the CV score can still improve
METRIC_MAX = 1.0  # ROC AUC and R^2
DEFAULT_OUT = HERE / "results" / "quality.csv"


# --- data ----------------------------------------------------------------------------------
def normalise(X: Any) -> Any:
    """Numeric and boolean columns as float, every other column as str objects (NaN kept).

    The types the runner's data=file loader gives a frame, applied here to the training
    and the test rows alike, so the test rows reach every system's model as its training
    rows did (Parquet would otherwise bring strings back as pandas' string dtype).
    """
    import pandas as pd

    X = X.copy()
    for col in X.columns:
        s = X[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            X[col] = s.astype(float)
        else:
            X[col] = s.map(lambda v: v if pd.isna(v) else str(v)).astype(object)
    return X


def protocol_split(X: Any, y: Any, task: str) -> list[Any]:
    """X_train, X_test, y_train, y_test: 25% held out, stratified for classification."""
    from sklearn.model_selection import train_test_split

    stratify = y if task == "classification" else None
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=stratify)


def write_split(name: str, folder: Path) -> dict[str, Any]:
    """Hold out 25% per the protocol; write train and test rows as Parquet."""
    X, y, task, target = load(name)
    X_train, X_test, y_train, y_test = protocol_split(normalise(X), y, task)
    paths = {}
    for part, features, labels in (("train", X_train, y_train), ("test", X_test, y_test)):
        frame = features.reset_index(drop=True)
        frame[target] = labels.reset_index(drop=True)
        paths[part] = str(folder / f"{name}-{part}.parquet")
        frame.to_parquet(paths[part], index=False)
    return {
        "set": name,
        "task": task,
        "target": target,
        "train": paths["train"],
        "test": paths["test"],
        "train_rows": len(y_train),
        "test_rows": len(y_test),
        "classes": int(y.nunique()) if task == "classification" else 0,
    }


def read_split(path: str, target: str) -> tuple[Any, Any]:
    import pandas as pd

    frame = pd.read_parquet(path)
    y = frame.pop(target).to_numpy()
    return normalise(frame), y


def save_output(path: Path, output: Any, classes: Any) -> None:
    """A final model's test output (class scores or predictions) and its classes, for the
    report's bootstrap intervals; classes as strings, as test_labels gives the labels."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.asarray([] if classes is None else [str(c) for c in classes])
    np.savez(path, output=np.asarray(output, dtype=float), classes=labels)


def test_labels(name: str) -> Any:
    """The test rows' target of a set (as strings for classification), split as write_split
    splits it."""
    import numpy as np

    X, y, task, _ = load(name)
    y_test = np.asarray(protocol_split(X, y, task)[3])
    return y_test.astype(float) if task == "regression" else np.asarray([str(v) for v in y_test])


def test_score(task: str, y_true: Any, output: Any, classes: Any) -> float:
    """R^2, or ROC AUC over one-vs-rest labels weighted by class size (plain AUC for 2)."""
    import numpy as np
    from sklearn.metrics import r2_score, roc_auc_score
    from sklearn.preprocessing import label_binarize

    if task == "regression":
        return float(r2_score(y_true, np.asarray(output, dtype=float)))
    classes = np.asarray(classes)
    scores = np.asarray(output, dtype=float)
    if len(classes) == 2:
        return float(roc_auc_score(np.asarray(y_true) == classes[1], scores[:, 1]))
    return float(roc_auc_score(label_binarize(y_true, classes=classes), scores, average="weighted"))


# --- one measurement, in its own process ---------------------------------------------------
def job_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    out: dict[str, Any] = {"status": "error"}
    seen: set[int] = set()
    stop = threading.Event()
    try:
        _pin(spec["cpus"])
        threading.Thread(target=_watch_cpus, args=(seen, stop), daemon=True).start()
        X_test, y_test = read_split(spec["test"], spec["target"])
        measure = {"flaml": _flaml, "autogluon": _autogluon}.get(spec["system"], _runner)
        out.update(measure(spec, X_test, y_test))
        output, classes = out.pop("test_output")
        if spec.get("predictions"):
            save_output(Path(spec["predictions"]), output, classes)
        out["status"] = "ok"
    except BaseException as ex:  # the row says what went wrong
        traceback.print_exc()
        lines = [ln for ln in traceback.format_exception_only(type(ex), ex) if ln.strip()]
        out["error"] = " ".join(ln.strip() for ln in lines)[-500:]
    stop.set()
    out["cpus_seen"] = " ".join(map(str, sorted(seen)))
    out["python"] = sys.executable
    Path(spec["result"]).write_text(json.dumps(out, default=str))


def _pin(cpus: int) -> None:
    """Keep this process and everything it starts (Ray, threads) on `cpus` CPUs."""
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, available[:cpus])


def _watch_cpus(seen: set[int], stop: threading.Event) -> None:
    """Collect the CPUs this process and all its descendants may run on, every second:
    the proof that Ray's workers (or AutoGluon's) stayed on the pinned CPUs."""
    try:
        import psutil
    except ImportError:  # the column stays empty
        return
    me = psutil.Process()
    while True:
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                seen.update(proc.cpu_affinity())
        if stop.wait(1.0):
            return


def _runner(spec: dict[str, Any], X_test: Any, y_test: Any) -> dict[str, Any]:
    from mlflow import MlflowClient

    import automl_runner
    from automl_runner.metrics import class_scores

    classification = spec["task"] == "classification"
    overrides = [
        "data=file",
        f"data.path={spec['train']}",
        f"data.target={spec['target']}",
        f"data.name={spec['set']}",
        f"automl={spec['task']}",
        # the metric, the budget and the CPUs; everything else at its shipped default
        f"automl.primary_metric={'AUC_weighted' if classification else 'r2_score'}",
        f"automl.experiment_timeout_minutes={spec['budget'] / 60!r}",
        f"automl.seed={spec['seed']}",
        f"compute.num_cpus={spec['cpus']}",
        # after the model is final: the wall time only
        "automl.model_explainability=false",
        f"tracking.store_dir={Path(spec['workdir']) / 'mlflow'}",
        *RUNNER_SYSTEMS[spec["system"]],
    ]
    start, started_at = time.perf_counter(), time.time()
    result = automl_runner.run(overrides)
    wall = time.perf_counter() - start
    model = result.model
    if classification:
        output, classes = class_scores(model, X_test), model.classes_
    else:
        output, classes = model.predict(X_test), None
    # time to the final best: when the driver recorded the best iteration (its child run
    # ends then) after the parent run started, right before the first launch
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    best = client.get_run(result.best_run_id)
    search = parent.data.metrics.get("search_seconds", result.search_seconds)
    # configurations: completed search iterations; the ensemble iterations built from them
    # afterwards are counted apart, and iterations cancelled at the deadline not at all
    completed = [r for r in result.results if r.status == "COMPLETED"]
    ensembles = sum(_is_ensemble(r.candidate) for r in completed)
    return {
        "test_score": test_score(spec["task"], y_test, output, classes),
        "test_output": (output, classes),
        "cv_score": result.best_score,
        "configs": len(completed) - ensembles,
        "ensembles": ensembles,
        "failed": sum(r.status in ("FAILED", "TIMEOUT") for r in result.results),
        "time_to_best": (best.info.end_time - parent.info.start_time) / 1000,
        # composing, loading the data, starting Ray and the MLflow store: before the search
        "setup_seconds": parent.info.start_time / 1000 - started_at,
        "search_seconds": search,
        "wall_seconds": wall,
        "budget_used": wall / spec["budget"],
        "best_model": result.best.candidate.description if result.best else "",
    }


def _is_ensemble(candidate: Any) -> bool:
    return bool(getattr(candidate, "members", ())) or getattr(candidate, "origin", "") == "ensemble"


def _flaml(spec: dict[str, Any], X_test: Any, y_test: Any) -> dict[str, Any]:
    import pandas as pd
    from flaml import AutoML

    X, y = read_split(spec["train"], spec["target"])
    classification = spec["task"] == "classification"
    if not classification:
        metric = "r2"
    elif spec["classes"] == 2:
        metric = "roc_auc"
    else:
        # FLAML's roc_auc_weighted scores multiclass on predicted labels; this is the
        # weighted one-vs-rest AUC on probabilities that the runner's AUC_weighted computes
        metric = "roc_auc_ovr_weighted"
    automl = AutoML()
    start = time.perf_counter()
    automl.fit(
        X_train=X,
        y_train=pd.Series(y),
        task=spec["task"],
        time_budget=spec["budget"],
        metric=metric,
        eval_method="cv",
        n_splits=5,
        n_jobs=spec["cpus"],
        seed=spec["seed"],
        verbose=0,
        mlflow_logging=False,
        log_file_name="",
    )
    wall = time.perf_counter() - start
    if classification:
        output, classes = automl.predict_proba(X_test), automl.classes_
    else:
        output, classes = automl.predict(X_test), None
    # trials per learner (config_history keeps only the improvements)
    tried = getattr(automl, "_iter_per_learner", None)
    configs = sum(tried.values()) if tried else len(automl.config_history)
    return {
        "test_score": test_score(spec["task"], y_test, output, classes),
        "test_output": (output, classes),
        # every metric used here is minimised by FLAML as 1 - score
        "cv_score": 1.0 - automl.best_loss,
        "configs": configs,
        "ensembles": 0,
        "failed": 0,
        "time_to_best": automl.time_to_find_best_model,
        "wall_seconds": wall,
        "budget_used": wall / spec["budget"],
        "best_model": f"{automl.best_estimator} {json.dumps(automl.best_config, default=str)}",
    }


def _autogluon_metric(spec: dict[str, Any]) -> tuple[str, str]:
    """(problem type, eval_metric): the metric every system searches on."""
    if spec["task"] == "regression":
        return "regression", "r2"
    if spec["classes"] == 2:
        return "binary", "roc_auc"
    return "multiclass", "roc_auc_ovr_weighted"


def _autogluon(spec: dict[str, Any], X_test: Any, y_test: Any) -> dict[str, Any]:
    from autogluon.tabular import TabularPredictor
    from autogluon_clock import FinishTimes

    X, y = read_split(spec["train"], spec["target"])
    train = X.assign(**{spec["target"]: y})
    problem, metric = _autogluon_metric(spec)
    predictor = TabularPredictor(
        label=spec["target"],
        problem_type=problem,
        eval_metric=metric,
        path=str(Path(spec["workdir"]) / "autogluon"),
        verbosity=0,
    )
    start = time.perf_counter()
    clock = FinishTimes(start)
    predictor.fit(train, time_limit=spec["budget"], num_cpus=spec["cpus"], callbacks=[clock])
    wall = time.perf_counter() - start
    if spec["task"] == "classification":
        proba = predictor.predict_proba(X_test)
        output, classes = proba.to_numpy(), list(proba.columns)
    else:
        output, classes = predictor.predict(X_test).to_numpy(), None
    board = predictor.leaderboard(silent=True)
    best = predictor.model_best
    return {
        "test_score": test_score(spec["task"], y_test, output, classes),
        "test_output": (output, classes),
        # its own holdout validation score of the best model, higher is better
        "cv_score": float(board.loc[board["model"] == best, "score_val"].iloc[0]),
        "configs": len(board),
        "ensembles": int(board["model"].str.startswith("WeightedEnsemble").sum()),
        "failed": _autogluon_failures(predictor),
        "time_to_best": clock.finished.get(best),
        "wall_seconds": wall,
        "budget_used": wall / spec["budget"],
        "best_model": best,
    }


def _autogluon_failures(predictor: Any) -> int | None:
    with contextlib.suppress(Exception):
        return len(predictor.model_failures())
    return None


def launch(spec: dict[str, Any], folder: Path, python: str, limit: float) -> dict[str, Any]:
    """Run one measurement in a child process of `python`; kill its process group if it
    overruns `limit` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "workdir": str(folder), "result": str(folder / "result.json")}
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))
    # the runner starts its own local Ray; never join a cluster from the environment
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    start = time.perf_counter()
    with open(folder / "job.log", "w") as log:
        child = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--job", str(spec_path)],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        try:
            child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_tree(child.pid)
            child.wait()
            return {"status": "timeout", "error": f"no result after {limit:.0f} s; killed"}
        finally:
            # Ray or worker processes the job left behind share its process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, 9)
    took = time.perf_counter() - start
    result_path = Path(spec["result"])
    if not result_path.exists():
        tail = (folder / "job.log").read_text()[-400:].strip().replace("\n", " | ")
        return {"status": "error", "error": f"exit {child.returncode}: {tail}"}
    out = json.loads(result_path.read_text())
    out["process_seconds"] = took
    for bulky in ("mlflow", "autogluon"):
        shutil.rmtree(folder / bulky, ignore_errors=True)
    return out


def _kill_tree(pid: int) -> None:
    """Kill a job's process group and every descendant found before it dies: Ray's
    workers run in process groups of their own and would outlive a killpg alone."""
    descendants = []
    with contextlib.suppress(Exception):  # psutil missing or the job already gone
        import psutil

        descendants = psutil.Process(pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, 9)
    for proc in descendants:
        with contextlib.suppress(Exception):
            proc.kill()


# --- the CSV -------------------------------------------------------------------------------
def key(row: dict[str, Any]) -> tuple[str, int, int, str]:
    return (row["set"], int(float(row["budget"])), int(row["seed"]), row["system"])


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def append_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: _cell(row.get(k)) for k in FIELDS})


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def latest(rows: list[dict[str, Any]], sha: str) -> dict[tuple[str, int, int, str], dict]:
    """The last row of each (set, budget, seed, system) among `sha`'s rows, whatever its
    status: an older ok row never hides a newer failure."""
    out: dict[tuple[str, int, int, str], dict] = {}
    for row in rows:
        if row.get("commit") == sha:
            out[key(row)] = row
    return out


# --- the environment -----------------------------------------------------------------------
PACKAGES = ("flaml", "lightgbm", "xgboost", "scikit-learn", "optuna", "ray", "mlflow", "pandas")
AUTOGLUON_PACKAGES = (
    "autogluon.tabular",
    "lightgbm",
    "catboost",
    "xgboost-cpu",
    "scikit-learn",
    "pandas",
    "numpy",
)


def versions(python: str, names: tuple[str, ...]) -> str:
    """`name version` of each package as the interpreter `python` sees them."""
    code = (
        "import sys\nfrom importlib import metadata as m\n"
        "for n in sys.argv[1:]:\n"
        "    try: print(n, m.version(n))\n"
        "    except m.PackageNotFoundError: print(n, 'not installed')\n"
    )
    try:
        out = subprocess.run(
            [python, "-c", code, *names], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except subprocess.CalledProcessError as ex:
        return f"cannot ask {python}: exit {ex.returncode} {ex.stderr.strip()[-200:]}"
    except (OSError, subprocess.SubprocessError) as ex:
        return f"cannot ask {python}: {type(ex).__name__}: {ex}"
    return ", ".join(out.split("\n")[:-1])


def autogluon_python(given: str | None) -> tuple[str | None, str]:
    """The interpreter that runs AutoGluon, and where it came from."""
    if given:
        return given, "--autogluon-python"
    if os.environ.get(AUTOGLUON_ENV):
        return os.environ[AUTOGLUON_ENV], AUTOGLUON_ENV
    if importlib.util.find_spec("autogluon") and importlib.util.find_spec("autogluon.tabular"):
        return sys.executable, "this interpreter has autogluon.tabular"
    return None, "none"


def environment(ag_python: str | None) -> list[str]:
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "-"
    lines = [
        f"machine:   {platform.node()}, {platform.machine()}, {cpus} CPUs ({usable} usable), "
        f"load average {load_avg}; Python {platform.python_version()} ({sys.executable})",
        f"packages:  {versions(sys.executable, PACKAGES)}",
        f"runner:    automl-runner {_version('automl-runner')}, commit {commit()}",
    ]
    if ag_python:
        lines.append(f"autogluon: {ag_python}: {versions(ag_python, AUTOGLUON_PACKAGES)}")
    return lines


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            # the code measured and the code measuring it (results/ is git-ignored)
            [
                "git",
                "-C",
                str(REPO),
                "status",
                "--porcelain",
                "--",
                "automl_runner",
                "conf",
                "benchmarks",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


# --- the report ----------------------------------------------------------------------------
CELL_FIELDS = ("test_score", "cv_score", "configs", "time_to_best", "wall_seconds", "budget_used")


def _field(row: dict[str, Any], field: str) -> float | None:
    """A row's value; budget used is always its wall over its budget (one definition for
    every system and every row, whatever an older row stored)."""
    if field == "budget_used":
        wall = _num(row.get("wall_seconds"))
        return None if wall is None else wall / float(row["budget"])
    return _num(row.get(field))


def cells(
    rows: dict[tuple[str, int, int, str], dict], seeds: list[int]
) -> dict[tuple[str, int, str], dict[str, Any]]:
    """(set, budget, system) -> medians over seeds, or the failure if any seed failed.

    A failure on one seed fails the cell: a crash is never averaged away.
    """
    grouped: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for (name, budget, seed, system), row in rows.items():
        if seed in seeds:
            grouped.setdefault((name, budget, system), []).append(row)
    out: dict[tuple[str, int, str], dict[str, Any]] = {}
    for k, group in grouped.items():
        bad = [r for r in group if r["status"] != "ok"]
        if bad:
            first = bad[0]
            out[k] = {
                "failed": f"{first['status']} (seed {first['seed']}): {first.get('error', '')}"
            }
            continue
        cell: dict[str, Any] = {"seeds": len(group)}
        for field in CELL_FIELDS:
            values = [v for v in (_field(r, field) for r in group) if v is not None]
            cell[field] = statistics.median(values) if values else None
        out[k] = cell
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_lines(
    table: dict, sets: list[str], budgets: list[int], seeds: list[int], systems: list[str]
) -> list[str]:
    """One line per set, budget and system, the systems of a set next to each other."""
    lines = [
        f"{'set':<14} {'budget':>6}  {'system':<21} {'seeds':>5} {'test':>7} {'cv':>7} "
        f"{'configs':>7} {'to best':>8} {'wall':>7} {'used':>5}  label"
    ]
    for budget in budgets:
        for name in sets:
            for system in systems:
                cell = table.get((name, budget, system))
                lead = f"{name:<14} {budget:>5}s  {system:<21}"
                if cell is None:
                    lines.append(f"{lead} not measured")
                elif "failed" in cell:
                    lines.append(f"{lead} FAILED {cell['failed'][:100]}")
                else:
                    seen = f"{cell['seeds']}/{len(seeds)}"
                    lines.append(
                        f"{lead} {seen:>5} "
                        f"{_fmt(cell['test_score'], '7.4f')} {_fmt(cell['cv_score'], '7.4f')} "
                        f"{_fmt(cell['configs'], '7.0f')} {_fmt(cell['time_to_best'], '7.1f')}s "
                        f"{_fmt(cell['wall_seconds'], '6.1f')}s "
                        f"{_fmt(_pct(cell['budget_used']), '4.0f')}%  {LABELS[system]}"
                    )
    return lines


def _pct(share: float | None) -> float | None:
    return None if share is None else 100 * share


def headline_lines(
    table: dict, sets: list[str], budgets: list[int], others: list[str]
) -> list[str]:
    """Test scores side by side, runner (defaults) minus each baseline."""
    head = f"{'set':<14} {'budget':>6} {'runner':>8}" + "".join(
        f" {o:>9} {'diff':>8}" for o in others
    )
    lines = [head]
    for budget in budgets:
        for name in sets:
            line = f"{name:<14} {budget:>5}s {_score(table, name, budget, 'runner'):>8}"
            for other in others:
                diff = pair(table, name, budget, other)
                shown = {-math.inf: "LOSS", math.inf: "WIN"}.get(diff) or _fmt(diff, "+8.4f")
                line += f" {_score(table, name, budget, other):>9} {shown:>8}"
            lines.append(line)
    return lines


def _score(table: dict, name: str, budget: int, system: str) -> str:
    cell = table.get((name, budget, system))
    if cell is None:
        return "-"
    return "FAILED" if "failed" in cell else _fmt(cell["test_score"], ".4f")


def pair(table: dict, name: str, budget: int, other: str) -> float | None:
    """runner test - other test; -inf (a loss) when the runner failed, +inf (a win) when
    only the other did (its user got no model in the budget); None if unmeasured."""
    ours, theirs = table.get((name, budget, "runner")), table.get((name, budget, other))
    if ours and "failed" in ours:
        return -math.inf
    if theirs and "failed" in theirs:
        return math.inf
    if ours is None or theirs is None:
        return None
    a, b = ours.get("test_score"), theirs.get("test_score")
    return -math.inf if a is None or b is None else a - b


def _pairs(table: dict, sets: list[str], budget: int, other: str) -> list[tuple[str, float]]:
    """(set, runner - other) for every set where both ran or either failed."""
    out = []
    for name in sets:
        diff = pair(table, name, budget, other)
        if diff is not None:
            out.append((name, diff))
    return out


def _verdict(met: bool, lost: bool, measured: int) -> str:
    """met / NOT met once the measured sets decide it, else incomplete."""
    if lost:
        return "NOT met"
    if met:
        return "met"
    return f"incomplete ({measured} of {PROTOCOL_SETS} sets measured)"


def _failed(table: dict, name: str, budget: int, other: str) -> str:
    """Which side of a pair failed, e.g. 'hmda (flaml failed)'."""
    who = [s for s in ("runner", other) if "failed" in table.get((name, budget, s), {})]
    return f"{name} ({' and '.join(who) or 'no score'} failed)"


def _show(table: dict, name: str, budget: int, other: str, diff: float) -> str:
    if math.isinf(diff):
        return _failed(table, name, budget, other)
    return f"{name} {diff:+.4f}"


def wins_target(table: dict, sets: list[str], budget: int, other: str) -> str:
    pairs = _pairs(table, sets, budget, other)
    if not pairs:
        return f"{budget} s: runner vs {other}: not measured"
    need = math.ceil(WIN_SHARE * PROTOCOL_SETS)
    n, wins = len(pairs), sum(d >= 0 for _, d in pairs)
    lost = [_failed(table, name, budget, other) for name, d in pairs if d == -math.inf]
    won = [_failed(table, name, budget, other) for name, d in pairs if d == math.inf]
    return (
        f"{budget} s: runner test >= {other} on {wins} of {n} measured sets "
        f"(target >= {need} of {PROTOCOL_SETS}, {WIN_SHARE:.0%}): "
        + _verdict(wins >= need, wins + PROTOCOL_SETS - n < need, n)
        + (f"; runner failures counted as losses: {', '.join(lost)}" if lost else "")
        + (f"; {other} failures counted as runner wins: {', '.join(won)}" if won else "")
    )


def margin_target(table: dict, sets: list[str]) -> str:
    pairs = _pairs(table, sets, 60, "flaml")
    if not pairs:
        return "60 s: runner vs flaml margin: not measured"
    behind = [_show(table, name, 60, "flaml", d) for name, d in pairs if d < -MARGIN]
    worst = min(pairs, key=lambda p: p[1])
    return (
        f"60 s: no set more than {MARGIN} below flaml: "
        + _verdict(len(pairs) >= PROTOCOL_SETS, bool(behind), len(pairs))
        + (f"; more below on: {', '.join(behind)}" if behind else "")
        + f" (worst: {_show(table, worst[0], 60, 'flaml', worst[1])})"
    )


def median_target(table: dict, sets: list[str]) -> str:
    pairs = _pairs(table, sets, 300, "autogluon")
    if not pairs:
        return "300 s: runner vs autogluon: not measured"
    n, mid = len(pairs), statistics.median(d for _, d in pairs)
    complete = n >= PROTOCOL_SETS
    failed = [_failed(table, name, 300, "autogluon") for name, d in pairs if math.isinf(d)]
    shown = {-math.inf: "LOSS", math.inf: "WIN"}.get(mid) or format(mid, "+.4f")
    return (
        f"300 s: median over {n} sets of runner - autogluon test = {shown} (target >= 0): "
        + _verdict(complete and mid >= 0, complete and mid < 0, n)
        + (f"; failures (runner: loss, autogluon: win): {', '.join(failed)}" if failed else "")
    )


def budget_target(table: dict, sets: list[str]) -> str:
    """The runner's 60 s searches use >= 90% of the budget where the CV can improve."""
    short, measured = [], 0
    for name in sets:
        cell = table.get((name, 60, "runner"))
        if cell is None:
            continue
        measured += 1
        if "failed" in cell:
            short.append(f"{name} FAILED")
            continue
        cv, used = cell.get("cv_score"), cell.get("budget_used")
        if cv is not None and cv >= METRIC_MAX:
            continue
        if used is None or used < BUDGET_SHARE:
            short.append(f"{name} {_fmt(_pct(used), '.0f')}%")
    if not measured:
        return "60 s: runner budget used: not measured"
    return (
        f"60 s: runner uses >= {BUDGET_SHARE:.0%} of the budget on every set with CV < "
        f"{METRIC_MAX:g}: "
        + _verdict(measured >= PROTOCOL_SETS, bool(short), measured)
        + (f"; below on: {', '.join(short)}" if short else "")
    )


def targets(table: dict, sets: list[str]) -> list[str]:
    return [
        wins_target(table, sets, 60, "flaml"),
        margin_target(table, sets),
        budget_target(table, sets),
        wins_target(table, sets, 300, "flaml"),
        median_target(table, sets),
    ]


def report(
    rows: list[dict[str, Any]],
    sha: str,
    sets: list[str],
    budgets: list[int],
    seeds: list[int],
    systems: list[str],
    outputs: Path | None = None,
) -> None:
    chosen = latest(rows, sha)
    others = sum(r.get("commit") != sha for r in rows)
    table = cells(chosen, seeds)
    print()
    print(
        f"commit {sha}: {len(chosen)} measurements (latest row of each)"
        + (f"; {others} rows of other commits in the CSV ignored" if others else "")
    )
    print(f"medians over seeds {','.join(map(str, seeds))} (test: ROC AUC weighted / R^2)")
    for line in table_lines(table, sets, budgets, seeds, systems):
        print(line)
    baselines = [s for s in systems if s in BASELINES]
    if "runner" in systems and baselines:
        print()
        print("headline: runner at its defaults vs each baseline, test scores side by side")
        for line in headline_lines(table, sets, budgets, baselines):
            print(line)
    print()
    print("issue 25 targets, from the medians above (runner at its defaults):")
    for line in targets(table, sets):
        print("  " + line)
    if outputs is not None and outputs.exists():
        print()
        print(
            f"runner - other, test score, medians over seeds, with a 95% interval over "
            f"{RESAMPLES} bootstrap resamples of the test rows (the same rows for both "
            f"systems; the test split's own noise):"
        )
        for line in intervals(chosen, sets, budgets, seeds, systems, outputs):
            print("  " + line)


def outputs_dir(out: Path) -> Path:
    """Where the final models' test outputs of the CSV `out` are kept."""
    return out.with_name(out.stem + "-outputs")


def output_path(outputs: Path, sha: str, name: str, budget: int, seed: int, system: str) -> Path:
    """One commit's outputs in a folder of their own, so commits never overwrite each other."""
    return outputs / sha / f"{name}-{budget}-{seed}-{system}.npz"


RESAMPLES = 1000


def intervals(
    rows: dict[tuple[str, int, int, str], dict],
    sets: list[str],
    budgets: list[int],
    seeds: list[int],
    systems: list[str],
    outputs: Path,
) -> list[str]:
    """Per set and budget, runner's median test score over seeds minus each other system's,
    and its 2.5 and 97.5 percentiles over bootstrap resamples of the test rows.

    Every system's seeds are scored on the same resampled rows, so the interval shows how
    much of a gap the test split alone (its size, its draw) could make; the seeds' spread
    is in the medians. Sets where some seed's output is missing are left out.
    """
    import numpy as np

    if "runner" not in systems:
        return []

    def runs(name: str, budget: int, system: str) -> list[Any] | None:
        found = []
        for seed in seeds:
            row = rows.get((name, budget, seed, system))
            if row is None or row["status"] != "ok":
                return None
            path = output_path(outputs, row["commit"], name, budget, seed, system)
            if not path.exists():
                return None
            found.append(np.load(path))
        return found

    lines = []
    for budget in budgets:
        for other in [s for s in systems if s != "runner"]:
            for name in sets:
                ours, theirs = runs(name, budget, "runner"), runs(name, budget, other)
                if ours is None or theirs is None:
                    continue
                task, y = SETS[name].task, test_labels(name)
                rng = np.random.default_rng(0)
                whole = _median_gap(task, y, ours, theirs, np.arange(len(y)))
                draws: list[float] = []
                while len(draws) < RESAMPLES:
                    idx = rng.integers(0, len(y), len(y))
                    with contextlib.suppress(ValueError):  # a resample without some class
                        draws.append(_median_gap(task, y, ours, theirs, idx))
                low, high = np.percentile(draws, [2.5, 97.5])
                lines.append(
                    f"{budget:>4} s vs {other:<20} {name:<14} {whole:+.4f}  "
                    f"[{low:+.4f}, {high:+.4f}]"
                )
    return lines


def _median_gap(task: str, y: Any, ours: list[Any], theirs: list[Any], idx: Any) -> float:
    """Median over seeds of the test score on rows `idx`, first system minus second."""
    medians = [
        statistics.median(
            test_score(task, y[idx], run["output"][idx], run["classes"]) for run in system
        )
        for system in (ours, theirs)
    ]
    return medians[0] - medians[1]


# --- main ----------------------------------------------------------------------------------
def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[60, 300], help="seconds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--sets", default="all", help="all, short, or names separated by commas")
    parser.add_argument("--systems", default="runner,flaml,autogluon", help=", ".join(SYSTEMS))
    parser.add_argument("--cpus", type=int, default=2, help="CPUs each system may use")
    parser.add_argument("--autogluon-python", help=f"AutoGluon's interpreter (${AUTOGLUON_ENV})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--resume", action="store_true", help="keep the CSV; add what's missing")
    parser.add_argument("--commit", help="only report this commit's rows (HEAD's by default)")
    parser.add_argument("--kill-after", type=float, help="seconds per job (2 x budget + 300)")
    parser.add_argument("--keep", action="store_true", help="keep every job's log and spec")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        return args
    args.sets = (
        list(SETS)
        if args.sets == "all"
        else list(SHORT)
        if args.sets == "short"
        else args.sets.split(",")
    )
    args.systems = args.systems.split(",")
    unknown = [s for s in args.sets if s not in SETS] + [
        s for s in args.systems if s not in SYSTEMS
    ]
    if unknown:
        parser.error(
            f"unknown set or system {unknown[0]!r}; sets: {', '.join(SETS)}; "
            f"systems: {', '.join(SYSTEMS)}"
        )
    return args


def runner_tree_error(systems: list[str]) -> str | None:
    """Why the runner rows would be mislabelled, if they would: each row carries this
    checkout's commit, so the automl_runner measured must be this checkout's code (an
    editable install of another worktree would put one tree's figures under another's
    commit)."""
    if not any(s in RUNNER_SYSTEMS for s in systems):
        return None
    spec = importlib.util.find_spec("automl_runner")
    if spec is None or spec.origin is None:
        return "automl_runner is not installed: pip install -e '.[bench]'"
    where = Path(spec.origin).resolve().parent.parent
    if where != REPO:
        return (
            f"automl_runner is imported from {where}, not from this checkout {REPO}: rows "
            f"would carry {REPO}'s commit for another tree's code; pip install -e "
            f"'{REPO}[bench]' in this interpreter, or run {where}/benchmarks/quality.py"
        )
    return None


def pick_interpreters(args: argparse.Namespace) -> dict[str, str]:
    """The interpreter of each system; AutoGluon dropped, with a line, when none has it."""
    ag_python, source = autogluon_python(args.autogluon_python)
    if "autogluon" in args.systems and ag_python is None:
        args.systems.remove("autogluon")
        print(
            "autogluon: SKIPPED: no interpreter with autogluon.tabular (give --autogluon-python "
            f"or ${AUTOGLUON_ENV}; benchmarks/requirements-autogluon.txt installs one); "
            "its targets read 'not measured'"
        )
    elif "autogluon" in args.systems:
        print(f"autogluon: interpreter {ag_python} (from {source})")
    return {s: (ag_python if s == "autogluon" else sys.executable) or "" for s in args.systems}


def start_csv(args: argparse.Namespace, outputs: Path) -> None:
    """Without --resume, an existing CSV and its outputs move aside to *.prev."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.resume or not args.out.exists():
        return
    previous = args.out.with_name(args.out.name + ".prev")
    args.out.replace(previous)
    print(f"moved the previous {args.out} to {previous} (use --resume to continue it)")
    if outputs.exists():
        shutil.rmtree(outputs.with_name(outputs.name + ".prev"), ignore_errors=True)
        outputs.replace(outputs.with_name(outputs.name + ".prev"))


def measure_all(args: argparse.Namespace, sha: str, pythons: dict[str, str], outputs: Path) -> None:
    """Every missing (budget, seed, set, system), one after another, a CSV row each."""
    done = {k for k, r in latest(read_rows(args.out), sha).items() if r["status"] == "ok"}
    jobs = [
        (budget, seed, name, system)
        for budget in args.budgets
        for seed in args.seeds
        for name in args.sets
        for system in args.systems
        if (name, budget, seed, system) not in done
    ]
    print(f"{len(jobs)} measurements to make; {len(done)} ok rows of {sha} reused", flush=True)
    work = Path(tempfile.mkdtemp(prefix="automl-quality-"))
    splits: dict[str, dict[str, Any]] = {}
    failures = 0
    for i, (budget, seed, name, system) in enumerate(jobs, 1):
        if name not in splits:
            splits[name] = write_split(name, work)
        split = splits[name]
        spec = {
            **split,
            "system": system,
            "budget": budget,
            "seed": seed,
            "cpus": args.cpus,
            "predictions": str(output_path(outputs, sha, name, budget, seed, system)),
        }
        limit = args.kill_after or 2 * budget + 300
        out = launch(spec, work / f"{name}-{budget}-{seed}-{system}", pythons[system], limit)
        row = {
            **{k: split[k] for k in ("set", "task", "train_rows", "test_rows")},
            "budget": budget,
            "seed": seed,
            "system": system,
            "cpus": args.cpus,
            "commit": sha,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **out,
        }
        append_row(args.out, row)
        failures += out["status"] != "ok"
        print(progress(f"[{i}/{len(jobs)}] {name} {budget} s seed {seed} {system}:", out))
    if failures or args.keep:
        print(f"{failures} measurement(s) failed; job logs are under {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def progress(lead: str, out: dict[str, Any]) -> str:
    if out["status"] != "ok":
        return f"{lead} {out['status']}: {out.get('error', '')[:300]}"
    return (
        f"{lead} test {_fmt(out.get('test_score'), '.4f')} "
        f"cv {_fmt(out.get('cv_score'), '.4f')} configs {out.get('configs')} "
        f"to best {_fmt(out.get('time_to_best'), '.1f')} s "
        f"wall {_fmt(out.get('wall_seconds'), '.1f')} s "
        f"used {_fmt(_pct(out.get('budget_used')), '.0f')}% "
        f"(process {_fmt(out.get('process_seconds'), '.1f')} s, CPUs {out.get('cpus_seen')}); "
        f"{str(out.get('best_model', ''))[:80]}"
    )


def main() -> None:
    args = parse()
    if args.job:
        job_main(args.job)
        return
    head = commit()
    sha = args.commit or head
    wrong_tree = None if args.commit else runner_tree_error(args.systems)
    if wrong_tree:
        raise SystemExit(f"quality.py: {wrong_tree}")
    pythons = pick_interpreters(args)
    for line in environment(pythons.get("autogluon")):
        print(line)
    print(
        f"protocol:  25% test (random_state=0), budgets {args.budgets} s, seeds {args.seeds}, "
        f"{args.cpus} CPUs per system, systems {','.join(args.systems)}, "
        f"sets {','.join(args.sets)}"
    )
    outputs = outputs_dir(args.out)
    if args.commit:
        print(
            f"--commit {sha} (HEAD is {head}): reporting its rows of {args.out}, measuring nothing"
        )
    else:
        start_csv(args, outputs)
        measure_all(args, sha, pythons, outputs)
    report(read_rows(args.out), sha, args.sets, args.budgets, args.seeds, args.systems, outputs)


if __name__ == "__main__":
    main()
