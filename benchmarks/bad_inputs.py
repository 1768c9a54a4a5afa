"""A battery of bad inputs, each run as a new user would: the installed command in a
fresh folder.

    python benchmarks/bad_inputs.py [--only NAME[,NAME...]] [--json OUT] [--python-m]
        [--timeout 120] [--list]

Every case writes its files (small synthetic CSVs, tiny data scripts) into a temp folder
of its own, runs `automl-runner ...` or `automl-ctl ...` there as a subprocess (the
console scripts on PATH; `python -m automl_runner.entry.cli|ctl` with `--python-m` or when
they are not installed) and records its exit code, its stderr, whether a traceback was
printed, and what it left behind: an MLflow store (an `mlflow.db` or `mlruns/`) that did
not exist before, and parent runs left RUNNING. The `automl-ctl` cases that need a run
get a copy of a store holding one finished experiment, made once per battery by a real
one-iteration run (a few seconds).

A case passes when it exits 2 (130 after Ctrl-C, 143 after SIGTERM); stderr is a single
line (after argparse's `usage:` lines, for argparse's own errors) that starts with the
program's prefix (`automl-runner: error: `; `automl-runner: ` after a signal) and names
the key or file; nothing printed a traceback or a raw Python warning (`...Warning:`) or
MLflow's database-migration lines; no parent run is left RUNNING; a read-only command
(`automl-ctl status|cancel|stop|wait|logs`, `explain.only=RUN`) created no store, and no
other command left an empty one (a store holding no run). A case that runs longer than
`--timeout` seconds is killed with its process group and recorded as hung.

Prints one table (case, exit code, stderr lines, traceback, left behind, result), then
"N of M pass" and, for each failing case, its last stderr line.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MODULES = {"automl-runner": "automl_runner.entry.cli", "automl-ctl": "automl_runner.entry.ctl"}
# a run id no store holds
NO_RUN = "0123456789abcdef0123456789abcdef"
# the cheapest experiment that still runs end to end, for cases that get past the checks
FAST = [
    "automl.iterations=2",
    "automl.model_explainability=false",
    "automl.enable_voting_ensemble=false",
    "automl.enable_stack_ensemble=false",
    "automl.allowed_models=[LogisticRegression]",
    "compute.num_cpus=1",
]
# the same with the explanation on (its code sees the data too)
QUICK = [o for o in FAST if not o.startswith("automl.model_explainability")]
# the exit code each way of ending a case expects
EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM = 2, 130, 143
TRACEBACK = "Traceback (most recent call last)"
# output no user should see: raw Python warnings, MLflow's migration log, Hydra's hint
NOISE = re.compile(
    r"\b\w*Warning: |Creating initial MLflow database tables|INFO  \[alembic|HYDRA_FULL_ERROR"
)
# parent runs whose MLflow status is RUNNING (children carry mlflow.parentRunId)
RUNNING_PARENTS = (
    "SELECT run_uuid FROM runs WHERE status = 'RUNNING' AND run_uuid NOT IN "
    "(SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId')"
)


@dataclass
class Case:
    """One bad input: the command, the files it needs, and what its error line must name."""

    name: str
    prog: str
    args: list[str]
    # substrings of which the error line must contain one (key, file, value)
    names: tuple[str, ...]
    # file name -> text or bytes, written into the case's folder (None: an empty folder)
    files: dict[str, str | bytes] = field(default_factory=dict)
    # a copy of the fixture store under outputs/mlflow: None, "finished" or "running"
    store: str | None = None
    readonly: bool = False
    # (signal, seconds after the start) sent to the command's process group
    interrupt: tuple[int, float] | None = None
    # exit codes that pass; 0 only where the input is legal but must run quietly
    exits: tuple[int, ...] = (EXIT_ERROR,)
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    # argparse prints its usage before its one error line
    usage_ok: bool = False


@dataclass
class Result:
    """What one case did, and whether that is what a new user should see."""

    name: str
    exit: int | None
    stderr_lines: int
    traceback: bool
    left: list[str]
    problems: list[str]
    seconds: float
    last_line: str
    stdout_tail: str = ""
    stderr_tail: str = ""

    @property
    def passed(self) -> bool:
        return not self.problems


# --- the data the cases read -----------------------------------------------------------------
def csv(rows: int = 20, header: str = "a,b,label", extra: str = "") -> str:
    """A small CSV: a number, a category and a yes/no label, optionally one more column."""
    lines = [header]
    for i in range(rows):
        lines.append(f"{i * 0.5},{'xy'[i % 2]},{'yes' if i % 3 else 'no'}{extra}")
    return "\n".join(lines) + "\n"


def script(body: str, imports: str = "import numpy as np") -> str:
    """A data script whose get_data() runs `body` (indented four spaces)."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return f"{imports}\n\n\ndef get_data():\n{indented}\n"


GOOD_XY = "X = np.arange(40.0).reshape(20, 2)\ny = np.arange(20) % 2\n"
SCRIPT = ["data=script", "data.path=get_data.py"]


def on_script(name: str, body: str, *extra: str, **kw: object) -> Case:
    """A case whose data script get_data.py has this get_data() body."""
    names = kw.pop("names", ("data.path=get_data.py",))
    return Case(
        name,
        "automl-runner",
        [*SCRIPT, *extra],
        names,  # type: ignore[arg-type]
        files={"get_data.py": script(body)},
        **kw,  # type: ignore[arg-type]
    )


def on_file(name: str, file: str, content: str | bytes, *extra: str, **kw: object) -> Case:
    """A case reading `file` (written with `content`) as data=file with target label."""
    names = kw.pop("names", (file,))
    return Case(
        name,
        "automl-runner",
        ["data=file", f"data.path={file}", "data.target=label", *extra],
        names,  # type: ignore[arg-type]
        files={file: content},
        **kw,  # type: ignore[arg-type]
    )


def runner(name: str, *args: str, names: tuple[str, ...], **kw: object) -> Case:
    """An automl-runner case without files of its own."""
    return Case(name, "automl-runner", list(args), names, **kw)  # type: ignore[arg-type]


def ctl(name: str, *args: str, names: tuple[str, ...], **kw: object) -> Case:
    """A read-only automl-ctl case (submit cases say readonly=False)."""
    kw.setdefault("readonly", True)
    return Case(name, "automl-ctl", list(args), names, **kw)  # type: ignore[arg-type]


def config_cases() -> list[Case]:
    """Composition and validation: options, keys, types, ranges, unreachable services."""
    ray = ["compute=ray", "compute.address=127.0.0.1:6379"]
    return [
        runner("unknown-group-option", "compute=gpu", names=("compute=gpu",)),
        runner("unknown-key", "automl.iteratons=3", names=("automl.iteratons",)),
        runner("unknown-top-level-key", "foo=1", names=("foo",)),
        runner("override-syntax", "automl.iterations=[1,", names=("automl.iterations",)),
        runner("iterations-not-int", "automl.iterations=ten", names=("automl.iterations",)),
        runner("preprocess-not-bool", "automl.preprocess=maybe", names=("automl.preprocess",)),
        runner("iterations-0", "automl.iterations=0", names=("automl.iterations",)),
        runner("iterations-negative", "automl.iterations=-1", names=("automl.iterations",)),
        runner(
            "n-cross-validations-1",
            "automl.n_cross_validations=1",
            names=("automl.n_cross_validations",),
        ),
        runner(
            "validation-size-1.5",
            "automl.n_cross_validations=null",
            "automl.validation_size=1.5",
            names=("automl.validation_size",),
        ),
        runner(
            "validation-size-and-folds",
            "automl.validation_size=0.2",
            names=("automl.validation_size",),
        ),
        runner(
            "experiment-timeout-negative",
            "automl.experiment_timeout_minutes=-5",
            names=("automl.experiment_timeout_minutes",),
        ),
        runner(
            "iteration-timeout-0",
            "automl.iteration_timeout_minutes=0",
            names=("automl.iteration_timeout_minutes",),
        ),
        runner(
            "metric-of-other-task",
            "automl.primary_metric=r2_score",
            names=("automl.primary_metric",),
        ),
        runner("metric-unknown", "automl.primary_metric=f1", names=("automl.primary_metric",)),
        runner(
            "allowed-model-unknown",
            "automl.allowed_models=[NoSuchModel]",
            names=("automl.allowed_models",),
        ),
        runner(
            "blocked-every-model",
            "automl.allowed_models=[LogisticRegression]",
            "automl.blocked_models=[LogisticRegression]",
            names=("automl.blocked_models",),
        ),
        runner(
            "max-concurrent-0",
            "automl.max_concurrent_iterations=0",
            names=("automl.max_concurrent_iterations",),
        ),
        runner("seed-not-int", "automl.seed=abc", names=("automl.seed",)),
        runner("data-builtin-unknown", "data=mnist", names=("data=mnist",)),
        runner("task-of-other-data", "data=diabetes", names=("automl.task",)),
        runner(
            "cluster-name-bad",
            *ray,
            "compute.cluster_name=my_cluster",
            names=("compute.cluster_name",),
        ),
        runner("ray-address-missing", "compute=ray", names=("compute.address",)),
        runner(
            "ray-address-malformed",
            "compute=ray",
            "compute.address=not an address",
            names=("compute.address",),
        ),
        runner(
            "ray-address-unreachable",
            "compute=ray",
            "compute.address=127.0.0.1:1",
            names=("compute.address",),
        ),
        runner("tracking-uri-missing", "tracking=server", names=("tracking.uri",)),
        runner(
            "tracking-uri-malformed",
            "tracking=server",
            "tracking.uri=mlflow-host",
            names=("tracking.uri",),
        ),
        runner(
            "tracking-server-unreachable",
            "tracking=server",
            "tracking.uri=http://127.0.0.1:1",
            names=("tracking.uri",),
        ),
        runner(
            "resume-without-store",
            f"automl.resume={NO_RUN}",
            names=("automl.resume",),
            readonly=True,
        ),
    ]


def script_cases() -> list[Case]:
    """Data scripts that are missing, broken, or return data that cannot be learnt from."""
    hang = "import time\ntime.sleep(3600)\n"
    return [
        runner(
            "script-missing",
            "data=script",
            "data.path=missing/get_data.py",
            names=("data.path=missing/get_data.py",),
        ),
        Case(
            "script-not-python",
            "automl-runner",
            ["data=script", "data.path=get_data.txt"],
            ("data.path=get_data.txt",),
            files={"get_data.txt": script(GOOD_XY)},
        ),
        Case(
            "script-syntax-error",
            "automl-runner",
            SCRIPT,
            ("get_data.py",),
            files={"get_data.py": "def get_data(:\n    return {}\n"},
        ),
        Case(
            "script-no-get-data",
            "automl-runner",
            SCRIPT,
            ("get_data.py",),
            files={"get_data.py": "DATA = 1\n"},
        ),
        on_script("script-raises", "raise ConnectionError('blob store unreachable')"),
        on_script("script-returns-list", "return [1, 2]"),
        on_script("script-returns-no-y", "return {'X': np.ones((4, 2))}"),
        on_script(
            "script-length-mismatch", "return {'X': np.ones((10, 2)), 'y': np.arange(9) % 2}"
        ),
        on_script("script-empty-X", "return {'X': np.empty((0, 3)), 'y': np.empty(0)}"),
        on_script("script-one-class", "return {'X': np.ones((20, 2)), 'y': np.zeros(20)}"),
        on_script(
            "script-nan-in-y",
            GOOD_XY + "y = y.astype(float)\ny[3] = np.nan\nreturn {'X': X, 'y': y}",
        ),
        on_script(
            "script-inf-in-X",
            GOOD_XY + "X[5, 1] = np.inf\nreturn {'X': X, 'y': y}",
        ),
        on_script(
            "script-string-array",
            "X = np.array([['a', 'b']] * 20)\nreturn {'X': X, 'y': np.arange(20) % 2}",
        ),
        on_script("script-sys-exit-3", "import sys\nsys.exit(3)"),
        # there is no data.timeout_minutes: the experiment's budget is all there is
        on_script(
            "script-hangs-with-budget",
            hang,
            "automl.experiment_timeout_minutes=0.25",
            names=("data.path=get_data.py", "automl.experiment_timeout_minutes"),
            timeout=60.0,
        ),
        on_script(
            "script-hangs-ctrl-c",
            hang,
            names=("",),
            interrupt=(signal.SIGINT, 8.0),
            exits=(EXIT_SIGINT,),
            timeout=60.0,
        ),
        on_script(
            "script-hangs-sigterm",
            hang,
            names=("",),
            interrupt=(signal.SIGTERM, 8.0),
            exits=(EXIT_SIGTERM,),
            timeout=60.0,
        ),
    ]


def file_cases() -> list[Case]:
    """CSV files that are missing, empty, malformed or too small for the validation."""
    five = "a,b,label\n" + "".join(f"{i},{i * 2},c{i}\n" for i in range(5))
    # a fourth column with no value in any row
    all_nan = csv(40, header="a,b,label,empty", extra=",")
    return [
        runner(
            "csv-missing",
            "data=file",
            "data.path=nope.csv",
            "data.target=label",
            names=("nope.csv",),
        ),
        on_file("csv-empty", "empty.csv", ""),
        on_file("csv-header-only", "header.csv", "a,b,label\n"),
        on_file("csv-label-missing", "t.csv", csv(), "data.target=Exited", names=("Exited",)),
        Case(
            "csv-target-not-given",
            "automl-runner",
            ["data=file", "data.path=t.csv"],
            ("data.target",),
            files={"t.csv": csv()},
        ),
        on_file(
            "csv-drop-unknown-column",
            "t.csv",
            csv(),
            "data.drop_columns=[id]",
            names=("data.drop_columns",),
        ),
        on_file("csv-duplicate-columns", "dup.csv", csv(header="a,a,label"), *FAST),
        on_file("csv-five-single-row-classes", "five.csv", five, *FAST),
        on_file(
            "csv-strings-without-preprocess",
            "t.csv",
            csv(),
            "automl.preprocess=false",
            names=("automl.preprocess",),
        ),
        # legal data: it may run (exit 0) but must not print numpy's RuntimeWarning
        on_file(
            "csv-all-nan-column",
            "nan.csv",
            all_nan,
            *QUICK,
            "automl.n_cross_validations=2",
            exits=(0, EXIT_ERROR),
            names=("nan.csv", "empty"),
        ),
        on_file("csv-binary", "binary.csv", bytes(range(256)) * 16),
        on_file("parquet-holding-csv", "t.parquet", csv()),
        on_file("wrong-extension", "t.json", json.dumps({"a": [1, 2], "label": [0, 1]})),
        on_file(
            "format-unknown",
            "t.csv",
            csv(),
            "data.format=excel",
            names=("data.format",),
        ),
    ]


def ctl_cases() -> list[Case]:
    """automl-ctl: unknown runs, missing stores, finished runs, bad arguments."""
    no_store = "sqlite:///{dir}/nowhere/mlflow.db"
    return [
        ctl("ctl-status-unknown-run", "status", NO_RUN, names=(NO_RUN,), store="finished"),
        ctl("ctl-status-no-default-store", "status", NO_RUN, names=("mlflow.db",)),
        ctl(
            "ctl-status-no-store-at-uri",
            "status",
            NO_RUN,
            "--tracking-uri",
            no_store,
            names=("nowhere",),
        ),
        ctl(
            "ctl-status-no-file-store-in-env",
            "status",
            NO_RUN,
            names=("mlruns",),
            env={"MLFLOW_TRACKING_URI": "file:./mlruns"},
        ),
        ctl(
            "ctl-status-server-unreachable",
            "status",
            NO_RUN,
            "--tracking-uri",
            "http://127.0.0.1:1",
            names=("127.0.0.1:1",),
            timeout=90.0,
        ),
        ctl(
            "ctl-cancel-iteration-negative",
            "cancel",
            "{run}",
            "--",
            "-1",
            names=("-1",),
            store="running",
            timeout=90.0,
        ),
        ctl("ctl-cancel-finished-run", "cancel", "{run}", "1", names=("{run}",), store="finished"),
        ctl(
            "ctl-cancel-iteration-not-int",
            "cancel",
            NO_RUN,
            "abc",
            names=("iteration",),
            usage_ok=True,
        ),
        ctl("ctl-stop-unknown-run", "stop", NO_RUN, names=(NO_RUN,), store="finished"),
        ctl("ctl-logs-unknown-run", "logs", NO_RUN, names=(NO_RUN,), store="finished"),
        ctl("ctl-logs-not-a-job", "logs", "{run}", names=("{run}",), store="finished"),
        ctl(
            "ctl-wait-unknown-run",
            "wait",
            NO_RUN,
            names=(NO_RUN,),
            store="finished",
            timeout=60.0,
        ),
        ctl("ctl-unknown-verb", "frobnicate", names=("frobnicate",), usage_ok=True),
        ctl("ctl-no-verb", names=("command",), usage_ok=True),
        ctl("ctl-cancel-missing-arguments", "cancel", names=("run_id",), usage_ok=True),
        ctl(
            "ctl-submit-bad-config",
            "submit",
            "automl.iterations=0",
            names=("automl.iterations",),
            readonly=False,
        ),
        ctl(
            "ctl-submit-no-jobs-api",
            "submit",
            "--address",
            "http://127.0.0.1:1",
            "data=iris",
            names=("127.0.0.1:1",),
            readonly=False,
        ),
    ]


def explain_cases() -> list[Case]:
    """explain.only: a read-only command on a run that is not there."""
    return [
        runner(
            "explain-only-no-store",
            f"explain.only={NO_RUN}",
            names=("explain.only",),
            readonly=True,
        ),
        runner(
            "explain-only-unknown-run",
            f"explain.only={NO_RUN}",
            names=("explain.only",),
            readonly=True,
            store="finished",
        ),
    ]


def all_cases() -> list[Case]:
    """Every case of the battery, in the order the table shows them."""
    return config_cases() + script_cases() + file_cases() + ctl_cases() + explain_cases()


# --- running a case ------------------------------------------------------------------------
def command(prog: str, python_m: bool) -> list[str]:
    """The console script on PATH, or `python -m` its module."""
    exe = None if python_m else shutil.which(prog)
    return [exe] if exe else [sys.executable, "-m", MODULES[prog]]


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without the settings that would point a new user elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}
    env.pop("HYDRA_FULL_ERROR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


def descendants(pid: int) -> list[int]:
    """Process ids below `pid` (empty without psutil): Ray may start its own sessions."""
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except Exception:
        return []


def kill_all(proc: subprocess.Popen, extra: list[int]) -> None:
    """SIGKILL the case's process group and whatever it started outside it."""
    for pid in extra:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)


def execute(argv: list[str], cwd: Path, case: Case, timeout: float) -> tuple[int | None, str, str]:
    """(exit code or None if hung, stdout, stderr) of `argv` in its own process group,
    with the case's signal sent on time."""
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=clean_env(case.env),
            start_new_session=True,
            text=True,
        )
        code = wait_with_signal(proc, case.interrupt, timeout)
        # a process a signal ended: the code a shell reports ($?), 128 + the signal
        code = 128 - code if code is not None and code < 0 else code
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()


def wait_with_signal(
    proc: subprocess.Popen, interrupt: tuple[int, float] | None, timeout: float
) -> int | None:
    """Wait for `proc`, sending its group `interrupt` on time; None (killed) past timeout."""
    start = time.monotonic()
    if interrupt is not None:
        sig, after = interrupt
        try:
            return proc.wait(timeout=after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, sig)
    try:
        return proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        kill_all(proc, descendants(proc.pid))
        proc.wait()
        return None


# --- what a case left behind -------------------------------------------------------------
def stores(folder: Path) -> set[Path]:
    """Every MLflow store under `folder`: SQLite files and file-store folders."""
    found = set(folder.rglob("mlflow.db"))
    found |= {p for p in folder.rglob("mlruns") if p.is_dir()}
    return found


def running_parents(store: Path) -> set[str]:
    """Ids of the parent runs a store holds as RUNNING."""
    if store.is_dir():
        return running_in_file_store(store)
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            return {row[0] for row in db.execute(RUNNING_PARENTS)}
    except sqlite3.Error:
        return set()


def running_in_file_store(root: Path) -> set[str]:
    """RUNNING (status 1) parent runs of a file store (mlruns/EXP/RUN/meta.yaml)."""
    ids = set()
    for meta in root.glob("*/*/meta.yaml"):
        run = meta.parent
        if "status: 1\n" in meta.read_text() and not (run / "tags/mlflow.parentRunId").exists():
            ids.add(run.name)
    return ids


def run_count(store: Path) -> int:
    """How many runs a store holds (a store with none is a side effect, not a record)."""
    if store.is_dir():
        return len(list(store.glob("*/*/meta.yaml")))
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.Error:
        return 0


@dataclass
class Snapshot:
    """The stores of a folder and the parent runs they hold RUNNING."""

    stores: set[Path]
    running: set[str]

    @classmethod
    def of(cls, folder: Path) -> Snapshot:
        found = stores(folder)
        return cls(found, set().union(*(running_parents(s) for s in found)))


def left_behind(before: Snapshot, after: Snapshot, folder: Path) -> tuple[list[str], set[Path]]:
    """(lines saying what the case left, the stores it created)."""
    created = after.stores - before.stores
    left = [f"store {s.relative_to(folder)} ({run_count(s)} runs)" for s in sorted(created)]
    left += [f"RUNNING {r[:8]}" for r in sorted(after.running - before.running)]
    return left, created


# --- judging a case ----------------------------------------------------------------------
def judge(
    case: Case,
    code: int | None,
    stdout: str,
    stderr: str,
    created: set[Path],
    newly_running: bool,
    run_id: str,
) -> list[str]:
    """Why this outcome is not what a new user should see (empty: it passes)."""
    if code is None:
        return ["hung"]
    problems = []
    if code not in case.exits:
        problems.append(f"exit {code}")
    if code != 0:
        problems += error_line_problems(case, code, stderr, run_id)
    if TRACEBACK in stdout + stderr:
        problems.append("traceback")
    noise = NOISE.search(stdout + stderr)
    if noise:
        problems.append("noise: " + noise.group(0).strip())
    if newly_running:
        problems.append("left RUNNING")
    if case.readonly and created:
        problems.append("created a store")
    elif any(run_count(s) == 0 for s in created):
        problems.append("empty store")
    return problems


def error_line_problems(case: Case, code: int, stderr: str, run_id: str) -> list[str]:
    """What is wrong with stderr as a one-line error: its count, prefix and naming."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if case.usage_ok:
        lines = [line for line in lines if not line.startswith(("usage:", " "))]
    if not lines:
        return ["stderr empty"]
    # argparse names the verb too: "automl-ctl cancel: error: ..."
    verb = r"( [a-z]+)?" if case.usage_ok else ""
    kind = "" if code in (EXIT_SIGINT, EXIT_SIGTERM) else "error: "
    prefix = re.compile(re.escape(case.prog) + verb + ": " + kind)
    problems = []
    if len(lines) > 1:
        problems.append(f"{len(lines)} lines")
    if not prefix.match(lines[-1]):
        problems.append("no error line")
    elif not any(n.replace("{run}", run_id) in lines[-1] for n in case.names):
        problems.append("names " + " or ".join(case.names).replace("{run}", "RUN"))
    return problems


# --- the fixture store -------------------------------------------------------------------
FIXTURE = [
    "data=iris",
    "automl.iterations=1",
    "automl.n_cross_validations=2",
    *FAST[1:],
]


def make_fixture(root: Path, python_m: bool) -> tuple[Path, str]:
    """(store folder, parent run id) of one finished one-iteration experiment."""
    folder = root / "fixture"
    folder.mkdir()
    out = subprocess.run(
        [*command("automl-runner", python_m), *FIXTURE],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env({}),
    )
    found = re.search(r"MLflow run:\s+([0-9a-f]{32}) \(parent\)", out.stdout)
    if out.returncode != 0 or not found:
        sys.exit(f"the fixture experiment failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return folder / "outputs" / "mlflow", found.group(1)


def place_store(fixture: Path, folder: Path, kind: str, run_id: str) -> None:
    """Copy the fixture store into the case's folder; "running" makes its run look alive:
    RUNNING, with this process as its driver."""
    target = folder / "outputs" / "mlflow"
    shutil.copytree(fixture, target)
    if kind != "running":
        return
    driver = f"{socket.gethostname()}:{os.getpid()}"
    tags = {
        "automl.state": "RUNNING",
        "automl.driver": driver,
        "automl.heartbeat": f"{time.time()}",
    }
    with sqlite3.connect(target / "mlflow.db") as db:
        db.execute("UPDATE runs SET status='RUNNING', end_time=NULL WHERE run_uuid=?", (run_id,))
        for key, value in tags.items():
            db.execute(
                "INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                (key, value, run_id),
            )


# --- the battery -------------------------------------------------------------------------
def run_case(
    case: Case, root: Path, fixture: tuple[Path, str] | None, python_m: bool, timeout: float
) -> Result:
    """Run one case in a fresh folder under `root` and judge it."""
    folder = root / case.name
    folder.mkdir()
    run_id = fixture[1] if fixture else ""
    for name, content in case.files.items():
        path = folder / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    if case.store and fixture:
        place_store(fixture[0], folder, case.store, run_id)
    argv = [a.replace("{run}", run_id).replace("{dir}", str(folder)) for a in case.args]
    before = Snapshot.of(folder)
    start = time.monotonic()
    code, stdout, stderr = execute(
        [*command(case.prog, python_m), *argv], folder, case, case.timeout or timeout
    )
    seconds = time.monotonic() - start
    after = Snapshot.of(folder)
    left, created = left_behind(before, after, folder)
    problems = judge(
        case, code, stdout, stderr, created, bool(after.running - before.running), run_id
    )
    lines = [line for line in stderr.splitlines() if line.strip()]
    return Result(
        case.name,
        code,
        len(lines),
        TRACEBACK in stdout + stderr,
        left,
        problems,
        seconds,
        lines[-1] if lines else "",
        stdout[-3000:],
        stderr[-3000:],
    )


def selected(cases: list[Case], only: list[str] | None) -> list[Case]:
    """The cases `--only` names (exact names or glob patterns), all without it."""
    if not only:
        return cases
    patterns = [p for item in only for p in item.split(",") if p]
    chosen = [c for c in cases if any(fnmatch.fnmatch(c.name, p) for p in patterns)]
    if not chosen:
        sys.exit(f"no case matches {', '.join(patterns)}; see --list")
    return chosen


def table(results: list[Result]) -> str:
    """The battery's table: one row per case."""
    head = ("case", "exit", "stderr", "traceback", "left behind", "result")
    rows = [
        (
            r.name,
            "hung" if r.exit is None else str(r.exit),
            str(r.stderr_lines),
            "yes" if r.traceback else "no",
            ", ".join(r.left) or "-",
            "PASS" if r.passed else "FAIL: " + "; ".join(r.problems),
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head) - 1)]

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        return "  ".join([*cells, row[-1]]).rstrip()

    return "\n".join([line(head), *(line(row) for row in rows)])


def report(results: list[Result], wall: float) -> str:
    """The table, the pass count and each failing case's last stderr line."""
    passed = sum(r.passed for r in results)
    failing = [r for r in results if not r.passed]
    text = [table(results), "", f"{passed} of {len(results)} pass ({wall:.0f} s)"]
    if failing:
        text += ["", "last stderr line of each failing case:"]
        text += [f"  {r.name}: {r.last_line[:200] or '(none)'}" for r in failing]
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="case names or globs, comma-separated")
    parser.add_argument("--json", type=Path, help="write every result (with output tails) here")
    parser.add_argument(
        "--python-m", action="store_true", help="run `python -m` the modules, not the scripts"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--keep", action="store_true", help="keep the cases' folders")
    args = parser.parse_args()
    cases = selected(all_cases(), args.only)
    if args.list:
        print("\n".join(c.name for c in cases))
        return
    root = Path(tempfile.mkdtemp(prefix="automl-bad-inputs-"))
    print(f"commands: {' '.join(command('automl-runner', args.python_m))}; folders: {root}")
    start = time.monotonic()
    fixture = make_fixture(root, args.python_m) if any(c.store for c in cases) else None
    results = []
    for i, case in enumerate(cases, 1):
        result = run_case(case, root, fixture, args.python_m, args.timeout)
        verdict = "PASS" if result.passed else "FAIL"
        print(
            f"[{i}/{len(cases)}] {case.name}: {verdict} ({result.seconds:.1f} s)", file=sys.stderr
        )
        results.append(result)
    wall = time.monotonic() - start
    print(report(results, wall))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
