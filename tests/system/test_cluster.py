"""compute=cluster on Ray's fake multi-node provider, standing in for a cloud: one command
brings the cluster up from config, the autoscaler grows it from 0 worker nodes while
iterations wait, the iterations run on the added nodes, the idle nodes go back, a
submitted experiment runs on it, and `automl-ctl cluster down` leaves no Ray process.

The fake head listens on a free port of 127.0.0.2 (its nodes are told the port in the
provider's gcs_address), never on 6379, so Ray clusters others run on this machine are
not touched; its processes are found by the marker and session it gives them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import NO_ENSEMBLES, mlflow_runs
from mlflow import MlflowClient

from system.loopback import free_port
from system.test_cli import cli

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

CTL = shutil.which("automl-ctl")
# three families of iterations that each sleep 4 s per fold: the three wait together for
# nodes, and last until the third node has joined
SLEEPER = (
    "s{i}: {{_target_: automl_test_estimators.SlowClassifier, name: Slow{i}, display: slow{i},"
    " task: classification, fixed: {{seconds: 4}}}}"
)
SLEEPERS = "++search_space.estimators={" + ", ".join(SLEEPER.format(i=i) for i in range(3)) + "}"
IDLE_MINUTES = 0.1


def ctl(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CTL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=os.environ
    )


def worker_nodes(cluster: list[str], cwd: Path) -> int:
    out = ctl(["cluster", "status", *cluster], cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(re.search(r"worker nodes:\s+(\d+)", out.stdout).group(1))


def test_a_fake_cluster_grows_with_the_work_shrinks_when_idle_and_goes(tmp_path):
    state_dir = tmp_path / "clusters"
    cluster = [
        "compute=cluster",
        "compute.provider=fake",
        "compute.cluster_name=fake-test",
        "compute.cpus_per_node=1",
        "compute.min_nodes=0",
        "compute.max_nodes=3",
        f"compute.idle_timeout_minutes={IDLE_MINUTES}",
        f"compute.head_port={free_port()}",
        f"compute.state_dir={state_dir}",
    ]
    store = f"tracking.store_dir={tmp_path / 'mlflow'}"
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    state_file = state_dir / "fake-test" / "state.json"
    seen: set[int] = set()
    try:
        # 1. one command: the cluster comes up from config, grows, runs, and stays up
        started = time.monotonic()
        out = cli(
            [
                *cluster,
                "compute.keep=true",
                "data=iris",
                SLEEPERS,
                "automl.allowed_models=[Slow0,Slow1,Slow2]",
                "automl.iterations=3",
                "automl.max_concurrent_iterations=3",
                "automl.n_cross_validations=3",
                "automl.model_explainability=false",
                *NO_ENSEMBLES,
                store,
            ],
            tmp_path,
        )
        ran = time.monotonic() - started
        assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
        assert "bringing cluster fake-test up (fake" in out.stdout
        joined = re.findall(r"cluster fake-test: node (\S+) joined after (\d+) s", out.stdout)
        assert len({name for name, _ in joined}) >= 3, out.stdout
        exp = MlflowClient(uri).get_experiment_by_name("automl-iris")
        _, children = mlflow_runs(uri, exp.experiment_id)
        nodes = {c.data.tags["automl.node"] for c in children}
        assert {c.data.tags["automl.status"] for c in children} == {"COMPLETED"}
        # each iteration ran on a node the autoscaler added (the head has no CPUs)
        assert len(nodes) >= 3 and nodes <= {name for name, _ in joined}, (nodes, joined)
        state = json.loads(state_file.read_text())
        seen |= {p.pid for p in _processes(state)}

        # 2. the idle nodes go back after the idle timeout
        idle_from = time.monotonic()
        while (up := worker_nodes(cluster, tmp_path)) > 0:
            assert time.monotonic() - idle_from < 120, f"{up} worker node(s) still up"
            time.sleep(1)
        shrunk = time.monotonic() - idle_from

        # 3. an experiment submitted onto the cluster that is up: it grows again
        out = ctl(
            [
                "submit",
                "--wait",
                *cluster,
                "data=iris",
                "automl.iterations=1",
                "automl.model_explainability=false",
                *NO_ENSEMBLES,
                store,
            ],
            tmp_path,
        )
        assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
        assert re.search(r"state:\s+FINISHED", out.stdout), out.stdout
        seen |= {p.pid for p in _processes(state)}
    finally:
        # 4. tear-down: every process of the cluster ends
        down = ctl(["cluster", "down", *cluster], tmp_path)
    assert down.returncode == 0, down.stderr[-2000:]
    assert "torn down" in down.stdout
    assert not state_file.exists()
    left = [p for p in _processes(state)] + [pid for pid in seen if psutil.pid_exists(pid)]
    assert not left, left
    assert not Path(state["temp_dir"]).exists()
    print(
        f"\nfake cluster: first node {min(int(s) for _, s in joined)} s after the driver "
        f"joined, {len(joined)} joined; command {ran:.0f} s; shrunk to 0 nodes {shrunk:.0f} s "
        f"after the experiment (idle_timeout_minutes={IDLE_MINUTES}); "
        f"{len(seen)} cluster processes seen, none left"
    )


def _processes(state: dict) -> list[psutil.Process]:
    """The cluster's processes: as tear-down finds them (marker or session), and, found
    another way, every process whose command line names the cluster's Ray temp folder
    (the head's and the nodes' GCS, raylets, agents)."""
    from automl_runner.engine.fake_cluster import cluster_processes

    found = {p.pid: p for p in cluster_processes(state["marker"], state["session"])}
    for proc in psutil.process_iter(["cmdline"]):
        if any(state["temp_dir"] in part for part in proc.info["cmdline"] or ()):
            found[proc.pid] = proc
    return list(found.values())


def test_a_fresh_machine_gets_the_token_a_fake_head_needs_and_keeps_it(tmp_path):
    """Ray refuses `ray start --head` in token mode without a token, and a fresh machine
    has none: the fake head makes it where Ray looks (~/.ray/auth_token), once."""
    from automl_runner.engine.fake_cluster import ensure_token

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    env |= {"HOME": str(tmp_path), "RAY_AUTH_MODE": "token"}
    token = tmp_path / ".ray" / "auth_token"
    ensure_token(env)
    first = token.read_text()
    assert len(first) >= 32
    ensure_token(env)
    assert token.read_text() == first
