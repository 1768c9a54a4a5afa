"""Ctrl-C and SIGTERM at every phase of the command, and a data script under a budget:
one line on stderr, no traceback, exit 130 (Ctrl-C), 143 (SIGTERM) or 2."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import NO_ENSEMBLES, SLEEPY, mlflow_runs
from mlflow import MlflowClient

from system.test_cli import cli

EXE = shutil.which("automl-runner")
# get_data() tells the test it started, then hangs
HANGS = "import time, pathlib\ndef get_data():\n    pathlib.Path('loading').touch()\n    time.sleep(3600)\n"
# a model whose predict_proba sleeps on the kernel explainer's batches (after creating
# the file {marker})
SLOW_TO_EXPLAIN = (
    "++search_space.estimators={{slowex: {{_target_: automl_test_estimators.SlowToExplainClassifier,"
    " name: SlowEx, display: slowex, task: classification, fixed: {{rows: 2000, marker: '{marker}'}}}}}}"
)


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [EXE, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as in a terminal: a background job of a shell starts with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _ended(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running {timeout:g} s after the signal")


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("automl-runner:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGTERM, 143, "terminated by SIGTERM"), (signal.SIGINT, 130, "interrupted")],
    ids=["SIGTERM", "Ctrl-C"],
)
def test_a_signal_while_the_data_loads_is_one_line(tmp_path, signum, code, said):
    (tmp_path / "get_data.py").write_text(HANGS)
    proc = _start(["data=script", "data.path=get_data.py"], tmp_path)
    _wait_for("get_data() to start", (tmp_path / "loading").exists)
    proc.send_signal(signum)
    _, stderr = _ended(proc, timeout=30)
    assert proc.returncode == code, stderr[-3000:]
    assert stderr.strip() == (f"automl-runner: {said} before the search started; nothing was run")


def test_a_hung_data_script_ends_at_data_timeout_minutes(tmp_path):
    (tmp_path / "get_data.py").write_text(HANGS)
    started = time.monotonic()
    out = cli(["data=script", "data.path=get_data.py", "data.timeout_minutes=0.02"], tmp_path)
    assert time.monotonic() - started < 30
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip() == (
        "automl-runner: error: data.path=get_data.py: get_data() did not return within 0.02 "
        "minutes (data.timeout_minutes=0.02); make it faster or raise data.timeout_minutes"
    )


def test_a_hung_data_script_ends_within_the_experiment_budget(tmp_path):
    (tmp_path / "get_data.py").write_text(HANGS)
    out = cli(
        ["data=script", "data.path=get_data.py", "automl.experiment_timeout_minutes=0.05"],
        tmp_path,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert _one_line(out.stderr).endswith(
        "get_data() did not return within 0.05 minutes (automl.experiment_timeout_minutes=0.05, "
        "counted from the experiment's start); make it faster or raise "
        "automl.experiment_timeout_minutes"
    )


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("import sys\ndef get_data():\n    sys.exit(3)\n", "get_data() called sys.exit(3)"),
        ("import sys\nsys.exit(4)\n", "importing the script called sys.exit(4)"),
    ],
    ids=["in get_data", "at import"],
)
def test_sys_exit_in_a_data_script_is_one_line(tmp_path, body, what):
    (tmp_path / "get_data.py").write_text(body)
    out = cli(["data=script", "data.path=get_data.py"], tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip() == (
        f"automl-runner: error: data.path=get_data.py: {what}; return the data, or raise an "
        "exception to fail the run"
    )


def test_sigterm_during_the_search_ends_the_run_killed_with_its_iterations(tmp_path):
    proc = _start(
        [
            "data=iris",
            "automl.n_cross_validations=2",
            SLEEPY,
            "automl.allowed_models=[Sleepy,LogisticRegression]",
            "automl.iterations=6",
            "compute.num_cpus=2",
        ],
        tmp_path,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # an iteration finished, the sleepy one runs
        if re.match(r"\s+\d+\s{3}\S", line):
            break
    proc.send_signal(signal.SIGTERM)
    _, stderr = _ended(proc, timeout=60)
    assert proc.returncode == 143, stderr[-3000:]
    found = re.fullmatch(
        r"automl-runner: terminated by SIGTERM; run ([0-9a-f]{32}) ended KILLED "
        r"\(resume it with automl.resume=\1\)",
        _one_line(stderr),
    )
    assert found, stderr[-3000:]
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow' / 'mlflow.db'}"
    parent = MlflowClient(uri).get_run(found.group(1))
    assert parent.info.status == "KILLED"
    children = mlflow_runs(uri, parent.info.experiment_id)[1]
    statuses = sorted(c.data.tags["automl.status"] for c in children)
    assert "COMPLETED" in statuses and "CANCELLED" in statuses, statuses
    assert all(c.info.status != "RUNNING" for c in children)


def test_ctrl_c_twice_during_the_explanation_exits_at_once(tmp_path):
    marker = tmp_path / "explaining"
    proc = _start(
        [
            "data=digits",
            "automl.n_cross_validations=2",
            SLOW_TO_EXPLAIN.format(marker=marker),
            "automl.allowed_models=[SlowEx]",
            "automl.iterations=1",
            *NO_ENSEMBLES,
            "explain.explainer=kernel",
            "compute.num_cpus=2",
        ],
        tmp_path,
    )
    _wait_for("the explanation to start", marker.exists)
    proc.send_signal(signal.SIGINT)
    time.sleep(2)  # the driver acts on a signal once a wait slice
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, stderr = _ended(proc, timeout=30)
    assert time.monotonic() - sent < 15
    assert proc.returncode == 130, stderr[-3000:]
    assert re.fullmatch(
        r"automl-runner: interrupted; run [0-9a-f]{32} ended KILLED \(resume it with .*\)",
        _one_line(stderr),
    )
