"""Quality at equal budget: this runner, FLAML and a plain random search (issue 5).

    pip install '.[bench]'
    python benchmarks/quality.py [--budgets 60 300] [--seeds 0] [--sets all|name,name]
        [--systems runner,flaml,random] [--out benchmarks/results/quality.csv] [--resume]

Protocol of ../shared/benchmarks/SETS.md: on each of the eight public sets plus digits
(sklearn's, rows 10 onward), 25% of the rows are held out as a test set
(`train_test_split(test_size=0.25, random_state=0)`, stratified for classification);
each system searches on the rest with 5-fold CV under the same wall-clock budget, one
after another, each in a fresh process pinned to the same `--cpus` CPUs (2):

* runner: this project with its defaults (`automl.search` default, ensembles on),
  `data=file` on a Parquet copy of the training rows, a local Ray with 2 CPUs and 2
  iterations at a time, MLflow into a throwaway store, no explanation;
* random: the same with `automl.search=random` and both ensembles off;
* flaml: `flaml.AutoML().fit(...)` with its default learners, `eval_method="cv"`,
  `n_splits=5`, `n_jobs=2`.

Each (set, budget, seed, system) gives one CSV row as soon as it is measured: the test
score of the final model (weighted one-vs-rest ROC AUC for classification, plain ROC AUC
for two classes; R^2 for regression), the CV score of the best configuration, the
configurations tried, the time from the start of the search to the final best, and the
wall time of the whole fit (the runner's includes starting Ray, the refit and logging the
model to MLflow; FLAML's its final retrain). `--resume` keeps the rows already in the CSV
and measures only the missing ones. At the end: one table of medians over seeds and the
targets of issue 5 computed from it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from public_sets import SETS  # noqa: E402
from public_sets import load as load_set  # noqa: E402

# extra overrides per runner-based system; None = FLAML
SYSTEMS: dict[str, list[str] | None] = {
    "runner": [],
    "flaml": None,
    "random": [
        "automl.search=random",
        "automl.enable_voting_ensemble=false",
        "automl.enable_stack_ensemble=false",
    ],
}
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
    "process_seconds",
    "best_model",
    "train_rows",
    "test_rows",
    "cpus",
    "commit",
    "finished_at",
    "error",
]
PROTOCOL_SETS = len(SETS)
TARGET_WINS = 6  # of the 9 sets at 60 s (issue 5; issue 25 brings its own)
TARGET_MARGIN = 0.01
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
    X, y, task, target = load_set(name)
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

    X, y, task, _ = load_set(name)
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
    try:
        _pin(spec["cpus"])
        X_test, y_test = read_split(spec["test"], spec["target"])
        if spec["system"] == "flaml":
            out.update(_flaml(spec, X_test, y_test))
        else:
            out.update(_runner(spec, X_test, y_test))
        output, classes = out.pop("test_output")
        if spec.get("predictions"):
            save_output(Path(spec["predictions"]), output, classes)
        out["status"] = "ok"
    except BaseException as ex:  # the row says what went wrong
        traceback.print_exc()
        lines = [ln for ln in traceback.format_exception_only(type(ex), ex) if ln.strip()]
        out["error"] = " ".join(ln.strip() for ln in lines)[-500:]
    Path(spec["result"]).write_text(json.dumps(out))


def _pin(cpus: int) -> None:
    """Keep this process and everything it starts (Ray, threads) on `cpus` CPUs."""
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, available[:cpus])


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
        f"automl.primary_metric={'AUC_weighted' if classification else 'r2_score'}",
        f"automl.experiment_timeout_minutes={spec['budget'] / 60!r}",
        "automl.iterations=100000",
        # equal budgets: the search uses all of it, as FLAML does (early stopping is for
        # iteration budgets; on by default, it ended some 60 s searches after 10 s)
        "automl.enable_early_stopping=false",
        "automl.n_cross_validations=5",
        f"automl.seed={spec['seed']}",
        "automl.model_explainability=false",
        f"automl.max_concurrent_iterations={spec['cpus']}",
        f"compute.num_cpus={spec['cpus']}",
        f"tracking.store_dir={Path(spec['workdir']) / 'mlflow'}",
        *(SYSTEMS[spec["system"]] or []),
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
        "search_seconds": result.search_seconds,
        "wall_seconds": wall,
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
        "setup_seconds": None,
        "search_seconds": None,
        "wall_seconds": wall,
        "best_model": f"{automl.best_estimator} {json.dumps(automl.best_config, default=str)}",
    }


def launch(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run one measurement in a child process; kill its process group if it overruns."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "workdir": str(folder), "result": str(folder / "result.json")}
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))
    limit = 2 * spec["budget"] + 300
    start = time.perf_counter()
    with open(folder / "job.log", "w") as log:
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--job", str(spec_path)],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, 9)
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
    shutil.rmtree(folder / "mlflow", ignore_errors=True)
    return out


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


# --- the report ----------------------------------------------------------------------------
def environment() -> list[str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "-"
    packages = (
        "flaml",
        "lightgbm",
        "xgboost",
        "scikit-learn",
        "optuna",
        "ray",
        "mlflow",
        "pandas",
        "numpy",
    )
    return [
        f"machine:   {platform.node()}, {platform.machine()}, {cpus} CPUs ({usable} usable), "
        f"load average {load}; Python {platform.python_version()}",
        "packages:  " + ", ".join(f"{p} {version(p)}" for p in packages),
        f"runner:    automl-runner {version('automl-runner')}, commit {commit()}",
    ]


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "automl_runner", "conf"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def medians(
    rows: list[dict[str, Any]], seeds: list[int]
) -> dict[tuple[str, int, str], dict[str, Any]]:
    """(set, budget, system) -> medians over seeds of the latest ok row per seed."""
    latest: dict[tuple[str, int, int, str], dict[str, Any]] = {}
    errors: dict[tuple[str, int, str], str] = {}
    for row in rows:
        k = key(row)
        if k[2] not in seeds:
            continue
        if row["status"] == "ok":
            latest[k] = row
        else:
            errors[(k[0], k[1], k[3])] = f"{row['status']}: {row.get('error', '')}"
    grouped: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for (name, budget, _, system), row in latest.items():
        grouped.setdefault((name, budget, system), []).append(row)
    out: dict[tuple[str, int, str], dict[str, Any]] = {}
    for k, group in grouped.items():
        cell: dict[str, Any] = {"seeds": len(group)}
        for field in ("test_score", "cv_score", "configs", "time_to_best", "wall_seconds"):
            values = [v for v in (_num(r[field]) for r in group) if v is not None]
            cell[field] = statistics.median(values) if values else None
        out[k] = cell
    for k, message in errors.items():
        out.setdefault(k, {"error": message})
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(
    rows: list[dict[str, Any]],
    sets: list[str],
    budgets: list[int],
    seeds: list[int],
    systems: list[str],
    outputs: Path | None = None,
) -> None:
    table = medians(rows, seeds)
    print()
    print(f"medians over seeds {','.join(map(str, seeds))} (test: ROC AUC weighted / R^2)")
    print(
        f"{'set':<11} {'budget':>6}  {'system':<7} {'seeds':>5} {'test':>8} {'cv':>8} "
        f"{'configs':>7} {'to best':>8} {'wall':>7}"
    )
    for budget in budgets:
        for name in sets:
            for system in systems:
                cell = table.get((name, budget, system))
                lead = f"{name:<11} {budget:>5}s  {system:<7}"
                if cell is None:
                    print(f"{lead} not measured")
                elif "error" in cell:
                    print(f"{lead} {cell['error'][:110]}")
                else:
                    print(
                        f"{lead} {str(cell['seeds']) + '/' + str(len(seeds)):>5} "
                        f"{_fmt(cell['test_score'], '8.4f')} "
                        f"{_fmt(cell['cv_score'], '8.4f')} {_fmt(cell['configs'], '7.0f')} "
                        f"{_fmt(cell['time_to_best'], '7.1f')}s {_fmt(cell['wall_seconds'], '6.1f')}s"
                    )
    print()
    print("issue 5 targets, from the medians above:")
    for line in targets(table, sets):
        print("  " + line)
    if outputs is not None and outputs.exists():
        print()
        print(
            f"runner - other, test score, medians over seeds, with a 95% interval over "
            f"{RESAMPLES} bootstrap resamples of the test rows (the same rows for both "
            f"systems; the test split's own noise):"
        )
        for line in intervals(rows, sets, budgets, seeds, systems, outputs):
            print("  " + line)


def outputs_dir(out: Path) -> Path:
    """Where the final models' test outputs of the CSV `out` are kept."""
    return out.with_name(out.stem + "-outputs")


def output_name(name: str, budget: int, seed: int, system: str) -> str:
    return f"{name}-{budget}-{seed}-{system}.npz"


RESAMPLES = 1000


def intervals(
    rows: list[dict[str, Any]],
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
    ok = {key(r) for r in rows if r["status"] == "ok"}

    def runs(name: str, budget: int, system: str) -> list[Any] | None:
        files = [outputs / output_name(name, budget, seed, system) for seed in seeds]
        if all(
            (name, budget, seed, system) in ok and f.exists()
            for seed, f in zip(seeds, files, strict=True)
        ):
            return [np.load(f) for f in files]
        return None

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
                    f"{budget:>4} s vs {other:<7} {name:<11} {whole:+.4f}  "
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


def _test(table: dict, name: str, budget: int, system: str) -> float | None:
    cell = table.get((name, budget, system))
    return None if cell is None else cell.get("test_score")


def _pairs(table: dict, sets: list[str], budget: int, other: str) -> list[tuple[str, float]]:
    """(set, runner test - other test) for the sets where both are measured."""
    out = []
    for name in sets:
        a, b = _test(table, name, budget, "runner"), _test(table, name, budget, other)
        if a is not None and b is not None:
            out.append((name, a - b))
    return out


def _verdict(measured: int, met: bool, failed: bool) -> str:
    """met / NOT met once the sets measured decide it, else incomplete."""
    if failed:
        return "NOT met"
    if met:
        return "met"
    return f"incomplete ({measured} of {PROTOCOL_SETS} sets measured)"


def targets(table: dict, sets: list[str]) -> list[str]:
    lines = []
    flaml60 = _pairs(table, sets, 60, "flaml")
    if flaml60:
        n, wins = len(flaml60), sum(d >= 0 for _, d in flaml60)
        lines.append(
            f"60 s: runner test >= flaml on {wins} of {n} measured sets "
            f"(target >= {TARGET_WINS} of {PROTOCOL_SETS}): "
            + _verdict(n, wins >= TARGET_WINS, wins + PROTOCOL_SETS - n < TARGET_WINS)
        )
        behind = [f"{name} {d:+.4f}" for name, d in flaml60 if d < -TARGET_MARGIN]
        worst = min(flaml60, key=lambda p: p[1])
        lines.append(
            f"60 s: no set more than {TARGET_MARGIN} below flaml: "
            + _verdict(n, n >= PROTOCOL_SETS, bool(behind))
            + (f"; more below on: {', '.join(behind)}" if behind else "")
            + f" (worst: {worst[0]} {worst[1]:+.4f})"
        )
    else:
        lines.append("60 s: runner vs flaml: not measured")
    random60 = _pairs(table, sets, 60, "random")
    if random60:
        n, below = len(random60), [f"{name} {d:+.4f}" for name, d in random60 if d < 0]
        lines.append(
            "60 s: runner test >= random on every set: "
            + _verdict(n, n >= PROTOCOL_SETS, bool(below))
            + (f"; below on: {', '.join(below)}" if below else "")
        )
    else:
        lines.append("60 s: runner vs random: not measured")
    flaml300 = _pairs(table, sets, 300, "flaml")
    if flaml300:
        n, mid = len(flaml300), statistics.median(d for _, d in flaml300)
        complete = n >= PROTOCOL_SETS
        lines.append(
            f"300 s: median over {n} sets of runner - flaml test = {mid:+.4f} (target > 0): "
            + _verdict(n, complete and mid > 0, complete and mid <= 0)
        )
    else:
        lines.append("300 s: runner vs flaml: not measured")
    return lines


# --- main ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[60, 300], help="seconds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--sets", default="all", help="all, or names separated by commas")
    parser.add_argument("--systems", default="runner,flaml,random")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs each system may use")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--resume", action="store_true", help="keep the CSV's rows, add missing")
    parser.add_argument("--keep", action="store_true", help="keep every job's log and spec")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        job_main(args.job)
        return

    sets = list(SETS) if args.sets == "all" else args.sets.split(",")
    systems = args.systems.split(",")
    unknown = [s for s in sets if s not in SETS] + [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(
            f"unknown set or system {unknown[0]!r}; sets: {', '.join(SETS)}; "
            f"systems: {', '.join(SYSTEMS)}"
        )
    for line in environment():
        print(line)
    print(
        f"protocol:  25% test (random_state=0), 5-fold CV, budgets {args.budgets} s, "
        f"seeds {args.seeds}, {args.cpus} CPUs per system, sets {','.join(sets)}"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    outputs = outputs_dir(args.out)
    if not args.resume and args.out.exists():
        previous = args.out.with_name(args.out.name + ".prev")
        args.out.replace(previous)
        print(f"moved the previous {args.out} to {previous} (use --resume to continue it)")
        if outputs.exists():
            shutil.rmtree(outputs.with_name(outputs.name + ".prev"), ignore_errors=True)
            outputs.replace(outputs.with_name(outputs.name + ".prev"))
    done = {key(r) for r in read_rows(args.out) if r["status"] == "ok"}
    jobs = [
        (budget, seed, name, system)
        for budget in args.budgets
        for seed in args.seeds
        for name in sets
        for system in systems
        if (name, budget, seed, system) not in done
    ]
    print(f"{len(jobs)} measurements to make, {len(done)} already in {args.out}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="automl-quality-"))
    splits: dict[str, dict[str, Any]] = {}
    sha = commit()
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
            "predictions": str(outputs / output_name(name, budget, seed, system)),
        }
        out = launch(spec, work / f"{name}-{budget}-{seed}-{system}")
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
        lead = f"[{i}/{len(jobs)}] {name} {budget} s seed {seed} {system}:"
        if out["status"] == "ok":
            print(
                f"{lead} test {_fmt(out.get('test_score'), '.4f')} "
                f"cv {_fmt(out.get('cv_score'), '.4f')} configs {out.get('configs')} "
                f"to best {_fmt(out.get('time_to_best'), '.1f')} s "
                f"wall {_fmt(out.get('wall_seconds'), '.1f')} s "
                f"(process {_fmt(out.get('process_seconds'), '.1f')} s); "
                f"{str(out.get('best_model', ''))[:80]}",
                flush=True,
            )
        else:
            failures += 1
            print(f"{lead} {out['status']}: {out.get('error', '')[:300]}", flush=True)
    if failures or args.keep:
        print(f"{failures} measurement(s) failed; job logs are under {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    report(read_rows(args.out), sets, args.budgets, args.seeds, systems, outputs)


if __name__ == "__main__":
    main()
