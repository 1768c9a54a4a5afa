"""Time to explain the best model, with default explain settings.

    python benchmarks/explain.py [--repeats 3]

For (1) the seed's digits experiment (20 iterations) and (2) a generated 20,000-row
classification set with numeric and categorical columns (8 iterations), it runs the
experiment once without explanation, then explains its best model `--repeats` times with
`explain.only` (the same code path as the end of an experiment, in a Ray task) and prints
the median explanation time. Target (issue 4): under 30 s each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

import automl_runner
from automl_runner.config.settings import settings
from automl_runner.experiment import explain_finished_run


def generated_csv(folder: Path) -> Path:
    X, y = make_classification(20_000, n_features=16, n_informative=8, n_classes=3, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(16)])
    rng = np.random.default_rng(0)
    frame["region"] = rng.choice(["north", "south", "east", "west"], len(frame))
    frame["plan"] = np.where(frame["f0"] > 0, "gold", "basic")
    frame.loc[rng.random(len(frame)) < 0.05, "f1"] = np.nan
    frame["label"] = np.array(["low", "mid", "high"])[y]
    path = folder / "generated.csv"
    frame.to_csv(path, index=False)
    return path


def measure(name: str, overrides: list[str], repeats: int, store: list[str]) -> None:
    result = automl_runner.run([*overrides, "automl.model_explainability=false", *store])
    times, walls, info = [], [], None
    for _ in range(repeats):
        cfg = settings(automl_runner.compose([f"explain.only={result.parent_run_id}", *store]))
        start = time.perf_counter()
        info = explain_finished_run(cfg, cfg.explain.only)
        walls.append(time.perf_counter() - start)
        assert info is not None, "the explanation failed; see the run's explanation/error.txt"
        times.append(info["seconds"])
    assert info is not None
    print(
        f"{name}: best {result.best.candidate.description} ({result.best_score:.4f}); "
        f"{info['explainer']} explainer, {info['rows']} rows; explanation "
        f"{statistics.median(times):.1f} s in the task, {statistics.median(walls):.1f} s with Ray "
        f"start and logging (median of {repeats}; target < 30 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = [f"tracking.store_dir={Path(tmp) / 'mlflow'}", "automl.verbosity=WARNING"]
        measure(
            "digits (seed experiment, 20 iterations)", ["automl.iterations=20"], args.repeats, store
        )
        path = generated_csv(Path(tmp))
        measure(
            "generated 20,000 rows x 18 columns (8 iterations)",
            ["data=file", f"data.path={path}", "data.target=label", "automl.iterations=8"],
            args.repeats,
            store,
        )


if __name__ == "__main__":
    main()
