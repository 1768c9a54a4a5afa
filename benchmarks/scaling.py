"""Throughput with 1 and 2 concurrent iterations, and peak memory with a 1 GB data set.

    python benchmarks/scaling.py [--repeats 3] [--gigabytes 1.0]

1. Throughput: the same fixed set of iterations (digits, same seed, so the same
   candidates) with automl.max_concurrent_iterations=1 and =2, run alternately in one
   process, `--repeats` times each. Iterations per minute come from the parent run's
   `search_seconds`; parallel efficiency = (ipm at 2) / (2 x ipm at 1). Target >= 0.85.
2. Memory: a generated numeric data set of `--gigabytes` GB (float64, from a get_data.py),
   2 concurrent iterations. The peak of the summed proportional set size (PSS: shared
   pages such as Ray's object store counted once) of the command and every process it
   starts (Ray's raylet, object store and workers), sampled every 0.25 s. Two
   configurations: cross-validation (each fit needs its training rows as an array of its
   own) and an X_valid holdout (fits read the object-store copy directly). Target: under
   2.5 x the data size.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from mlflow import MlflowClient

EXE = shutil.which("automl-runner")


def run(args: list[str], folder: Path, sample_memory: bool = False) -> tuple[Any, float]:
    """(parent run, peak summed PSS in bytes) of one command."""
    assert EXE, "automl-runner is not installed (pip install .)"
    proc = subprocess.Popen(
        [EXE, *args], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = 0.0
    if sample_memory:
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            root = psutil.Process(proc.pid)
            while not stop.is_set():
                total = 0
                try:
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    break
                for p in procs:
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        total += p.memory_full_info().pss
                peak = max(peak, total)
                time.sleep(0.25)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
    _, stderr = proc.communicate()
    if sample_memory:
        stop.set()
        thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"automl-runner {' '.join(args)} failed:\n{stderr[-3000:]}")
    client = MlflowClient(f"sqlite:///{folder / 'outputs' / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    return parent, peak


def _summed_durations(folder: Path, parent: Any) -> float:
    """Summed worker-side duration of the parent's iterations: shows per-iteration slowdown."""
    client = MlflowClient(f"sqlite:///{folder / 'outputs' / 'mlflow' / 'mlflow.db'}")
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        max_results=1000,
    )
    return sum(c.data.metrics["duration_seconds"] for c in children)


GET_DATA = """
import numpy as np

def get_data():
    rng = np.random.default_rng(0)
    rows = int({gigabytes} * 1e9 / 8 / {columns})
    X = rng.standard_normal((rows, {columns}))
    y = X[:, :5].sum(axis=1) + rng.standard_normal(rows)
    out = {{"X": X, "y": y}}
    if {holdout}:
        cut = int(rows * 0.8)
        out = {{"X": X[:cut], "y": y[:cut], "X_valid": X[cut:], "y_valid": y[cut:]}}
    return out
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--only", choices=["throughput", "memory"], default=None)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="automl-scaling-"))
    common = [
        f"automl.iterations={args.iterations}",
        "automl.model_explainability=false",
        "automl.allowed_models=[RandomForest,ExtremeRandomTrees,KNN,LogisticRegression,SVM]",
        "automl.verbosity=WARNING",
    ]
    ipm: dict[int, list[float]] = {1: [], 2: []}
    for r in range(args.repeats if args.only != "memory" else 0):
        for k in (1, 2):
            parent, _ = run([*common, f"automl.max_concurrent_iterations={k}"], folder)
            seconds = parent.data.metrics["search_seconds"]
            ipm[k].append(60 * args.iterations / seconds)
            compute = _summed_durations(folder, parent)
            print(
                f"repeat {r + 1}, {k} concurrent: {args.iterations} iterations in {seconds:.1f} s "
                f"= {ipm[k][-1]:.1f} iterations/min (summed iteration compute {compute:.1f} s)",
                flush=True,
            )

    size = args.gigabytes * 1e9
    peaks = {}
    for name, holdout in (
        (("5-fold CV", False), ("X_valid holdout", True)) if args.only != "throughput" else ()
    ):
        # the same run on a 10 MB set: the footprint of Python, Ray's processes and MLflow
        measured = {}
        for gigabytes in (0.01, args.gigabytes):
            script = folder / f"get_data_{'holdout' if holdout else 'cv'}_{gigabytes}.py"
            script.write_text(
                textwrap.dedent(GET_DATA.format(gigabytes=gigabytes, columns=125, holdout=holdout))
            )
            parent, measured[gigabytes] = run(
                [
                    "data=script",
                    f"data.path={script}",
                    "automl=regression",
                    "automl.iterations=2",
                    "automl.max_concurrent_iterations=2",
                    "automl.allowed_models=[SGD]",
                    "automl.model_explainability=false",
                    "automl.verbosity=WARNING",
                ],
                folder,
                sample_memory=True,
            )
        base, peak = measured[0.01], measured[args.gigabytes]
        peaks[name] = (peak, base)
        print(
            f"memory, {name}: peak {peak / 1e9:.2f} GB with {size / 1e9:.2f} GB of data, "
            f"{base / 1e9:.2f} GB with 0.01 GB; ({int(parent.data.metrics['iterations_completed'])} "
            f"iterations completed)",
            flush=True,
        )

    print()
    if ipm[1]:
        one, two = statistics.median(ipm[1]), statistics.median(ipm[2])
        efficiencies = [b / (2 * a) for a, b in zip(ipm[1], ipm[2], strict=True)]
        print(
            f"throughput (median of {args.repeats}): {one:.1f} iterations/min at 1 concurrent, "
            f"{two:.1f} at 2; parallel efficiency {two / (2 * one):.2f} "
            f"(per-repeat median {statistics.median(efficiencies):.2f}; target >= 0.85)"
        )
    for name, (peak, base) in peaks.items():
        print(
            f"peak memory, {name}, 2 concurrent: whole run {peak / size:.2f} x the data size "
            f"({peak / 1e9:.2f} GB; target < 2.5 x); above the 0.01 GB run's "
            f"{base / 1e9:.2f} GB: {(peak - base) / size:.2f} x"
        )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
