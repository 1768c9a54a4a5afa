"""Remote runs you can steer, on a real cluster started with `ray start --head`.

Submit returns at once; status, cancel and stop work from other processes through MLflow;
a driver killed with SIGKILL is resumed; Ctrl-C once stops, twice exits at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SLEEPY, SLOW, mlflow_runs
from mlflow import MlflowClient

import automl_runner
from system.loopback import RAY_ENV, LoopbackCluster
from system.test_cli import cli

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CTL = shutil.which("automl-ctl")
# iris, 2-fold CV: the real iterations take a fraction of a second
SMALL = ["data=iris", "automl.n_cross_validations=2"]
# a family that sleeps for ten minutes unless cancelled, next to a quick one
SLEEPY_AND_QUICK = [SLEEPY, "automl.allowed_models=[Sleepy,LogisticRegression]"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node with two CPUs that also serves the Ray Jobs API."""
    c = LoopbackCluster(head_cpus=2, jobs=True, cwd=tmp_path_factory.mktemp("head"))
    yield c
    c.stop()


def _wait_for(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def _store(tmp_path: Path) -> tuple[str, str]:
    """(override, tracking URI) of a fresh embedded store."""
    return (
        f"tracking.store_dir={tmp_path / 'mlflow'}",
        f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
    )


def _children(client: MlflowClient, run_id: str) -> list[Any]:
    exp = client.get_run(run_id).info.experiment_id
    return client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")


def _running_runs(uri: str, run_id: str) -> list[str]:
    client = MlflowClient(uri)
    parents, children = mlflow_runs(uri, client.get_run(run_id).info.experiment_id)
    return [r.info.run_id for r in parents + children if r.info.status == "RUNNING"]


def _ctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CTL, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **RAY_ENV}
    )


def test_submit_returns_at_once_then_status_cancel_and_stop_from_other_processes(cluster, tmp_path):
    store, uri = _store(tmp_path)
    overrides = [*cluster.overrides(), store, *SMALL, *SLEEPY_AND_QUICK, "automl.iterations=30"]
    # the submitter is a process of its own, as a notebook on another machine would be
    code = (
        "import json, sys, time, automl_runner; t = time.monotonic();"
        f"h = automl_runner.submit(json.loads(sys.argv[1]), address='{cluster.jobs_address}');"
        "print(json.dumps([h.run_id, h.job_id, h.tracking_uri, time.monotonic() - t]))"
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(overrides)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, **RAY_ENV},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_id, job_id, tracking_uri, seconds = json.loads(out.stdout.strip().splitlines()[-1])
    assert seconds < 20, seconds
    print(f"submit returned in {seconds:.1f} s ({time.monotonic() - started:.1f} s with imports)")
    assert tracking_uri == uri and job_id

    # this process is another one: the handle needs only the run id and the store
    remote = automl_runner.attach(run_id, uri)
    assert remote.job_id == job_id and remote.status().state in ("SUBMITTED", "RUNNING")

    def sleepy_running():
        st = remote.status()
        return st.state == "RUNNING" and [n for n, p, _ in st.running if "sleepy" in p]

    n = _wait_for("a sleepy iteration to run", sleepy_running)[0]
    status = _ctl("status", run_id, "--tracking-uri", uri)
    assert status.returncode == 0, status.stderr
    assert re.search(r"^state:\s+RUNNING \(driver ", status.stdout, re.M)
    assert re.search(rf"^running:\s+{n}\s+.* sleepy, for \d:\d\d:\d\d$", status.stdout, re.M)
    assert re.search(r"^iterations:\s+\d+ of 30 done", status.stdout, re.M)

    # cancel iteration n from the command line: it is recorded CANCELLED, the rest goes on
    cancel = _ctl("cancel", run_id, str(n), "--tracking-uri", uri)
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.strip() == f"cancel iteration {n}: cancelled"
    client = MlflowClient(uri)

    def later_iteration_done():
        return [
            c
            for c in _children(client, run_id)
            if int(c.data.tags["automl.iteration"]) > n
            and c.data.tags["automl.status"] == "COMPLETED"
        ]

    _wait_for("an iteration after the cancelled one to finish", later_iteration_done)
    again = remote.cancel_iteration(n)
    assert again == f"ignored: iteration {n} already finished (CANCELLED)"

    # stop: no new iterations, the running ones cancelled, the best refit, explained, logged
    assert remote.stop() == "stopping"
    final = remote.wait(timeout=240)
    assert final.state == "FINISHED", str(final)
    assert 0 < final.done < 30 and not final.running
    assert final.cancelled >= 2 and final.completed >= 2
    children = {int(c.data.tags["automl.iteration"]): c for c in _children(client, run_id)}
    assert len(children) == final.done + final.ensembles
    cancelled = children[n]
    assert cancelled.data.tags["automl.status"] == "CANCELLED"
    assert cancelled.info.status == "KILLED"
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["automl.job_id"] == job_id
    assert parent.data.tags["automl.top_features"]
    assert parent.data.tags["automl.control.stop"] == "stopping"
    assert parent.data.metrics["iterations_cancelled"] == final.cancelled
    assert _running_runs(uri, run_id) == []
    best_run, model = remote.get_output()
    assert best_run.info.run_id == parent.data.tags["automl.best_run_id"]
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    assert (model.predict(iris.data) == iris.target).mean() > 0.9
    # the job's output is the ordinary console table
    logs = _ctl("logs", run_id, "--tracking-uri", uri)
    assert logs.returncode == 0, logs.stderr
    assert "stop requested: no new iterations" in logs.stdout


def test_submit_with_bad_input_fails_before_anything_is_submitted(cluster, tmp_path):
    store, _ = _store(tmp_path)
    out = _ctl(
        "submit", "--address", cluster.jobs_address, *cluster.overrides(), store,
        "automl.primary_metric=r2_score",
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "automl-ctl: error: automl.primary_metric=r2_score: allowed for classification: "
        "AUC_weighted, accuracy, average_precision_score_weighted, norm_macro_recall, "
        "precision_score_weighted"
    )
    assert not (tmp_path / "mlflow").exists()


@pytest.fixture(scope="module")
def killed_run(cluster, tmp_path_factory):
    """An experiment whose driver got SIGKILL after 3 of its 8 iterations finished.

    (overrides, tracking URI, parent run id, child runs at the kill)
    """
    tmp = tmp_path_factory.mktemp("killed")
    store, uri = _store(tmp)
    overrides = [
        *cluster.overrides(),
        store,
        *SMALL,
        SLOW,
        "automl.allowed_models=[Slow,LogisticRegression]",
        "++search_space.estimators.slow.fixed={seconds: 0.5}",
        "automl.iterations=8",
        "automl.max_concurrent_iterations=2",
        "automl.model_explainability=false",
    ]
    proc = subprocess.Popen(
        [shutil.which("automl-runner"), *overrides],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **RAY_ENV},
    )
    rows = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if re.match(r"\s+\d+\s{3}\S", line):
            rows += 1
            if rows == 3:
                proc.kill()
                break
    proc.wait(timeout=60)
    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`automl.kind` = 'experiment'",
    )
    children = _children(client, parent.info.run_id)
    assert parent.info.status == "RUNNING" and 3 <= len(children) < 8
    return overrides, uri, parent.info.run_id, children


def test_resume_with_a_different_search_is_refused_in_one_line(killed_run, tmp_path):
    overrides, uri, run_id, before = killed_run
    out = cli(
        [*overrides, "automl.seed=1", "data=wine", f"automl.resume={run_id}"],
        tmp_path,
        env=RAY_ENV,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip() == (
        f"automl-runner: error: automl.resume={run_id}: the search-relevant config differs from "
        "that run's: automl.seed (0 -> 1), data.name (iris -> wine); resume with the original "
        "values or start a new experiment"
    )
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"
    assert len(_children(client, run_id)) == len(before)


def test_resume_after_sigkill_of_the_driver_completes_exactly_the_budget(killed_run, tmp_path):
    overrides, uri, run_id, before = killed_run
    # the status of a run whose driver is gone says so, and how to go on
    status = _ctl("status", run_id, "--tracking-uri", uri)
    assert re.search(rf"^state:\s+LOST: resume it with automl.resume={run_id}", status.stdout, re.M)
    # budgets may change on resume; here: a longer iteration timeout
    out = cli(
        [*overrides, "automl.iteration_timeout_minutes=5", f"automl.resume={run_id}"],
        tmp_path,
        env=RAY_ENV,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(rf"resuming run {run_id}: \d+ finished iteration\(s\) read back", out.stdout)
    client = MlflowClient(uri)
    every = _children(client, run_id)
    children = [c for c in every if c.data.tags["automl.kind"] == "iteration"]
    numbers = [int(c.data.tags["automl.iteration"]) for c in children]
    assert len(children) == 8 and len(set(numbers)) == 8
    # the ensembles come after the 8 search iterations, built from the resumed driver's
    # own ones (4 or 5: out-of-fold predictions are not kept in MLflow); the stacking one
    # always, the voting one unless its selection keeps a single member
    built = [c for c in every if c not in children]
    ensembles = [int(c.data.tags["automl.iteration"]) for c in built]
    assert 1 <= len(ensembles) <= 2 and all(n > max(numbers) for n in ensembles)
    last = max(built, key=lambda c: int(c.data.tags["automl.iteration"]))
    assert last.info.run_name.endswith("-StackEnsemble")
    # the finished iterations were not run or logged again; the new ones come after them
    # (one the kill caught half-logged, still RUNNING, is run again under a new number)
    earlier = {
        c.info.run_id: int(c.data.tags["automl.iteration"])
        for c in before
        if c.info.status != "RUNNING"
    }
    assert (
        earlier.items()
        <= {c.info.run_id: n for c, n in zip(children, numbers, strict=True)}.items()
    )
    assert min(n for n in numbers if n not in earlier.values()) > max(earlier.values())
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["automl.resumes"] == "1"
    assert parent.data.tags["automl.best_model_uri"]
    m = parent.data.metrics
    counted = sum(m[f"iterations_{k}"] for k in ("completed", "failed", "timed_out", "cancelled"))
    # the ensembles are counted apart: they do not count toward automl.iterations
    assert counted == 8 and m["iterations_ensembles"] == len(ensembles)
    status = _ctl("status", run_id, "--tracking-uri", uri)
    suffix = f"; {len(ensembles)} ensemble\\(s\\)$"
    assert re.search(rf"^iterations:\s+8 of 8 done: .*{suffix}", status.stdout, re.M), status.stdout
    history = client.get_metric_history(run_id, "best_AUC_weighted")
    assert sorted(h.step for h in history) == list(range(1, 9 + len(ensembles)))
    assert _running_runs(uri, run_id) == []


def _interrupted(cluster, tmp_path: Path, signals: int) -> tuple[subprocess.Popen, str, str, float]:
    """Run the command, send SIGINT `signals` times once an iteration finished and a
    sleepy one runs; (process, stdout, stderr, seconds from the last signal to exit)."""
    store, _ = _store(tmp_path)
    proc = subprocess.Popen(
        [
            shutil.which("automl-runner"),
            *cluster.overrides(),
            store,
            *SMALL,
            *SLEEPY_AND_QUICK,
            "automl.iterations=20",
            "automl.model_explainability=false",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **RAY_ENV},
        # as in a terminal: a shell's background job (nohup ... &, some CI runners)
        # starts with SIGINT ignored, and an ignored Ctrl-C stays ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if re.match(r"\s+\d+\s{3}\S", line):
            break
    time.sleep(3)  # the portfolio's sleepy default is running by now
    proc.send_signal(signal.SIGINT)
    if signals == 2:
        # the second once the driver has acted on the first (Python runs its handler once
        # per wait slice of the driver, 1 s: two signals within one slice count as one, as
        # two quick key presses would), while it still cancels and refits
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("Ctrl-C: no new iterations"):
                break
        proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    stdout, stderr = proc.communicate(timeout=180)
    return proc, "".join(seen) + stdout, stderr, time.monotonic() - sent


def test_ctrl_c_once_stops_and_logs_the_best_then_the_run_ends_killed(cluster, tmp_path):
    proc, stdout, stderr, _ = _interrupted(cluster, tmp_path, signals=1)
    assert proc.returncode == 130, stderr[-3000:]
    run_id = re.search(r"MLflow run:\s+([0-9a-f]{32}) \(parent\)", stdout).group(1)
    assert stderr.strip().splitlines()[-1] == (
        f"automl-runner: stopped by Ctrl-C; run {run_id} ended KILLED with the best so far "
        f"(resume it with automl.resume={run_id})"
    )
    assert "Ctrl-C: no new iterations" in stdout and "CANCELLED" in stdout
    uri = _store(tmp_path)[1]
    parent = MlflowClient(uri).get_run(run_id)
    assert parent.info.status == "KILLED"
    assert parent.data.tags["automl.best_model_uri"]
    assert parent.data.metrics["iterations_cancelled"] >= 1
    assert _running_runs(uri, run_id) == []


def test_ctrl_c_twice_exits_at_once_and_leaves_no_run_running(cluster, tmp_path):
    proc, stdout, stderr, seconds = _interrupted(cluster, tmp_path, signals=2)
    assert proc.returncode == 130, stderr[-3000:]
    assert seconds < 15
    # the one line that says so (Ray's own shutdown may still print after it)
    found = re.search(
        r"^automl-runner: interrupted; run ([0-9a-f]{32}) ended KILLED \(resume it with "
        r"automl.resume=\1\)$",
        stderr,
        re.M,
    )
    assert found, stderr[-3000:]
    run_id = found.group(1)
    assert "Traceback" not in stderr
    uri = _store(tmp_path)[1]
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED"
    assert _running_runs(uri, run_id) == []
