"""A part fails mid-run and nothing is lost: the MLflow tracking server killed and
restarted (the run goes on into its journal, docs/faults.md), or killed for longer than
tracking.outage_minutes (the run ends with one line, and `automl-ctl replay` writes the
journal later)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import NO_ENSEMBLES, mlflow_runs
from mlflow import MlflowClient

from system.loopback import MlflowServer

AWAY = "does not answer; the run goes on"
BACK = "answers again after"


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [shutil.which("automl-runner"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )


def _until_rows(proc: subprocess.Popen, n: int) -> list[str]:
    """The console's lines until `n` rows of the table have been printed."""
    assert proc.stdout is not None
    lines, rows = [], 0
    for line in proc.stdout:
        lines.append(line)
        if re.match(r"\s+\d+\s{3}\S", line):
            rows += 1
            if rows == n:
                return lines
    pytest.fail(f"the run ended before {n} rows:\n" + "".join(lines[-40:]))


def _experiment_runs(url: str, name: str):
    exp = MlflowClient(url).get_experiment_by_name(name)
    return mlflow_runs(url, exp.experiment_id)


@pytest.mark.server
@pytest.mark.slow
def test_a_tracking_server_restarted_mid_run_loses_nothing(tmp_path):
    server = MlflowServer(tmp_path / "server")
    server.root.mkdir()
    server.start()
    proc = _start(
        [
            "tracking=server",
            f"tracking.uri={server.url}",
            "tracking.experiment_name=outage",
            "data=iris",
            "automl.iterations=20",
            "automl.max_concurrent_iterations=2",
        ],
        tmp_path,
    )
    try:
        lines = _until_rows(proc, 5)
        server.stop()
        stopped = time.monotonic()
        # long enough for the journal's retries to back off (1, 2, 4 s) and fail again
        time.sleep(10)
        server.start()
        restarted = time.monotonic()
        rest, _ = proc.communicate(timeout=600)
        ended = time.monotonic()
    finally:
        proc.kill()
        server_up = server.proc is not None
    console = "".join(lines) + rest
    assert proc.returncode == 0, console[-4000:]
    assert server_up
    # the outage in two lines, and nothing else of it: no traceback, no urllib3 retries
    assert console.count(AWAY) == 1 and console.count(BACK) == 1, console[-4000:]
    assert "Traceback" not in console and "Retrying" not in console
    print(
        f"server down {restarted - stopped:.0f} s; the run ended {ended - restarted:.0f} s "
        "after the restart"
    )
    parents, children = _experiment_runs(server.url, "outage")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["automl.state"] == "FINISHED"
    searched = [c for c in children if c.data.tags["automl.kind"] == "iteration"]
    assert sorted(int(c.data.tags["automl.iteration"]) for c in searched) == list(range(20))
    assert {c.data.tags["automl.status"] for c in searched} == {"COMPLETED"}
    assert {c.info.status for c in children} == {"FINISHED"}
    assert parent.data.metrics["iterations_completed"] == 20
    # every child's metrics and the parent's best-so-far curve made it
    assert all("AUC_weighted" in c.data.metrics for c in searched)
    client = MlflowClient(server.url)
    best = client.get_metric_history(parent.info.run_id, "best_AUC_weighted")
    assert len(best) >= 20
    # the best model, logged by id, under the run's real id, and the explanation
    best_run = parent.data.tags["automl.best_run_id"]
    assert best_run in {c.info.run_id for c in children}
    model_uri = parent.data.tags["automl.best_model_uri"]
    assert model_uri.startswith("models:/m-")
    explanation = [a.path for a in client.list_artifacts(parent.info.run_id, "explanation")]
    assert "explanation/summary.json" in explanation
    code = (
        "import mlflow, sklearn.datasets as d; "
        f"mlflow.set_tracking_uri('{server.url}'); "
        f"m = mlflow.sklearn.load_model('{model_uri}'); "
        "print(len(m.predict(d.load_iris(as_frame=True).data)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    server.stop()
    assert loaded.stdout.strip() == "150", loaded.stderr[-2000:]
    # the journal is gone once all of it is in MLflow
    assert not list(tmp_path.glob("outputs/**/tracking-journal"))


@pytest.mark.server
@pytest.mark.slow
def test_a_server_away_past_the_outage_limit_ends_the_run_and_replay_writes_it(tmp_path):
    server = MlflowServer(tmp_path / "server")
    server.root.mkdir()
    server.start()
    proc = _start(
        [
            "tracking=server",
            f"tracking.uri={server.url}",
            "tracking.experiment_name=lost",
            "tracking.outage_minutes=0.1",
            "data=iris",
            "automl.iterations=40",
            *NO_ENSEMBLES,
            "explain.rows=20",
        ],
        tmp_path,
    )
    try:
        _until_rows(proc, 3)
        server.stop()
        rest, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 75, rest[-3000:]
    last = rest.strip().splitlines()[-1]
    assert "Traceback" not in rest
    match = re.fullmatch(
        r"automl-runner: error: tracking\.uri=\S+: the tracking server did not answer within "
        r"tracking\.outage_minutes; run (\w+) is kept in (\S+): write it to MLflow with "
        r"`automl-ctl replay \S+` once the server is up",
        last,
    )
    assert match, last
    run_id, journal = match.groups()
    # in the run's own output folder
    assert Path(journal).is_dir() and tmp_path / "outputs" / "runs" in Path(journal).parents
    server.start()
    try:
        replay = subprocess.run(
            [shutil.which("automl-ctl"), "replay", journal],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert replay.returncode == 0, replay.stderr[-3000:]
        assert replay.stdout.startswith("replayed "), replay.stdout
        parents, children = _experiment_runs(server.url, "lost")
    finally:
        server.stop()
    (parent,) = parents
    assert parent.info.run_id == run_id and parent.info.status == "FINISHED"
    # stopped by the outage: fewer than asked, every one of them in MLflow and counted
    completed = [c for c in children if c.data.tags["automl.status"] == "COMPLETED"]
    assert 3 <= len(completed) < 40
    counted = sum(v for k, v in parent.data.metrics.items() if k.startswith("iterations_"))
    assert counted - parent.data.metrics["iterations_running"] == len(children)
    assert parent.data.tags["automl.best_model_uri"].startswith("models:/m-")
