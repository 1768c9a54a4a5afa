"""compute=ray against a cluster started with `ray start`, tracking=server against `mlflow server`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from automl_test_estimators import marks
from conftest import NO_ENSEMBLES, SLOW, mlflow_runs
from mlflow import MlflowClient

from system.loopback import NODE_IP, RAY_ENV, LoopbackCluster, MlflowServer, free_port
from system.test_cli import cli


@pytest.fixture(scope="module")
def two_nodes():
    """A head and one worker node, one CPU each, as a user starts them: a second node must
    be used to run 2 at once. One cluster for the module; the test that kills the worker
    node comes last in the file."""
    cluster = LoopbackCluster(head_cpus=1)
    worker = cluster.add_worker(cpus=1)
    yield cluster, worker
    cluster.stop()


def _runs(tmp_path: Path, experiment: str):
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow' / 'mlflow.db'}"
    exp = MlflowClient(uri).get_experiment_by_name(experiment)
    return mlflow_runs(uri, exp.experiment_id)


@pytest.mark.cluster
@pytest.mark.slow
def test_compute_ray_joins_an_existing_cluster_and_spreads_iterations_over_its_nodes(
    two_nodes, tmp_path
):
    cluster, _ = two_nodes
    node_ids = cluster.nodes()
    out = cli(
        [
            *cluster.overrides(),
            "compute.cluster_name=test-cluster",
            SLOW,
            "automl.allowed_models=[Slow,LogisticRegression]",
            "compute.min_nodes=2",
            "data=iris",
            "automl.iterations=6",
            *NO_ENSEMBLES,
            "++search_space.estimators.slow.fixed={seconds: 0.4}",
        ],
        tmp_path,
        env=RAY_ENV,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    parents, children = _runs(tmp_path, "automl-iris")
    assert len(parents) == 1 and len(children) == 6
    assert parents[0].data.params["compute.address"] == cluster.address
    assert parents[0].data.params["compute.cluster_name"] == "test-cluster"
    used = {c.data.tags["automl.node"].split("/")[1] for c in children}
    assert len(used) == 2
    assert {u for u in used} == {n[-12:] for n in node_ids}


@pytest.mark.cluster
@pytest.mark.slow
def test_min_nodes_not_reached_fails_with_one_line(two_nodes, tmp_path):
    cluster, _ = two_nodes
    start = time.monotonic()
    out = cli(
        [
            *cluster.overrides(),
            "compute.min_nodes=3",
            "compute.timeout_minutes=0.1",
            "automl.iterations=1",
            *NO_ENSEMBLES,
        ],
        tmp_path,
        env=RAY_ENV,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "automl-runner: error: compute.min_nodes=3: only 2 node(s) joined within "
        "compute.timeout_minutes=0.1; add nodes with `ray start --address=HEAD:PORT` or lower min_nodes"
    )
    assert time.monotonic() - start < 60


@pytest.mark.cluster
def test_unreachable_cluster_fails_with_one_line(tmp_path):
    port = free_port()
    out = cli(
        ["compute=ray", f"compute.address={NODE_IP}:{port}", "automl.iterations=1", *NO_ENSEMBLES],
        tmp_path,
        env=RAY_ENV,
        timeout=180,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"automl-runner: error: compute.address={NODE_IP}:{port}: cannot join a Ray cluster there"
    )


# the iterations of the node-loss test: two at once (one on each node), then, the worker gone,
# the rest one after another on the head; each 5 folds of SLOW_FIT_S
LOST_NODE_ITERATIONS, SLOW_FIT_S = 6, 0.5


def _first_on(node_id: str, folder: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    """The first iteration seen fitting on `node_id` (the test estimator's marks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for iteration, fits in sorted(marks(folder).items()):
            if any(node == node_id for node, _ in fits):
                return iteration
        time.sleep(0.1)
    pytest.fail(f"no iteration ran on the worker node (runner exit code {proc.poll()})")


@pytest.mark.cluster
@pytest.mark.slow
def test_losing_a_node_mid_run_reruns_its_iteration_on_the_surviving_node(two_nodes, tmp_path):
    cluster, worker = two_nodes
    head = cluster.head_node()
    [worker_id] = [n for n in cluster.nodes() if n != head]
    folder = tmp_path / "marks"
    folder.mkdir()
    output = tmp_path / "runner.out"
    with output.open("w") as out:
        proc = subprocess.Popen(
            [
                shutil.which("automl-runner"),
                *cluster.overrides(),
                SLOW,
                "automl.allowed_models=[Slow]",
                "compute.min_nodes=2",
                # what the rerun takes; with 0 the lost iteration is recorded FAILED
                "compute.max_retries=2",
                "data=iris",
                f"automl.iterations={LOST_NODE_ITERATIONS}",
                *NO_ENSEMBLES,
                f"++search_space.estimators.slow.fixed={{seconds: {SLOW_FIT_S}, marks: '{folder}'}}",
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **RAY_ENV},
        )
        try:
            # kill the worker node while an iteration fits on it
            lost = _first_on(worker_id, folder, proc)
            cluster.kill(worker)
            assert worker.poll() is not None
            # with it the worker process fitting the iteration
            [(_, pid), *_] = marks(folder)[lost]
            assert not psutil.pid_exists(pid), f"worker process {pid} outlived its node"
            alive = cluster.nodes_without(worker_id)
            assert alive == [head], f"the head still reports the worker node alive: {alive}"
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = output.read_text()
    assert proc.returncode == 0, text[-3000:]
    parents, children = _runs(tmp_path, "automl-iris")
    assert parents[0].info.status == "FINISHED"
    by_number = {int(c.data.tags["automl.iteration"]): c for c in children}
    assert sorted(by_number) == list(range(LOST_NODE_ITERATIONS))
    statuses = {n: c.data.tags["automl.status"] for n, c in by_number.items()}
    assert set(statuses.values()) == {"COMPLETED"}, statuses
    assert parents[0].data.metrics["iterations_completed"] == LOST_NODE_ITERATIONS
    # the lost iteration ran again, on the head, and its record says so
    assert by_number[lost].data.tags["automl.node"].split("/")[1] == head[-12:]
    nodes_of_lost = [node for node, _ in marks(folder)[lost]]
    assert nodes_of_lost[0] == worker_id and nodes_of_lost[-1] == head


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server.url
    server.stop()


@pytest.mark.server
@pytest.mark.slow
def test_tracking_server_receives_runs_and_model(mlflow_server, tmp_path):
    out = cli(
        [
            "tracking=server",
            f"tracking.uri={mlflow_server}",
            "tracking.experiment_name=over-http",
            "data=breast_cancer",
            "automl.iterations=3",
            *NO_ENSEMBLES,
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"open it at:      {mlflow_server}/#/experiments/" in out.stdout
    assert not (tmp_path / "outputs" / "mlflow").exists() and not (tmp_path / "mlruns").exists()
    exp = MlflowClient(mlflow_server).get_experiment_by_name("over-http")
    parents, children = mlflow_runs(mlflow_server, exp.experiment_id)
    assert len(parents) == 1 and len(children) == 3
    model_uri = parents[0].data.tags["automl.best_model_uri"]
    code = (
        "import mlflow; from sklearn.datasets import load_breast_cancer;"
        f"mlflow.set_tracking_uri('{mlflow_server}'); m = mlflow.pyfunc.load_model('{model_uri}');"
        "X = load_breast_cancer(as_frame=True).data; print(len(m.predict(X)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "569"


@pytest.mark.server
def test_unreachable_tracking_server_is_one_line(tmp_path):
    port = free_port()
    out = cli(
        [
            "tracking=server",
            f"tracking.uri=http://127.0.0.1:{port}",
            "automl.iterations=1",
            *NO_ENSEMBLES,
        ],
        tmp_path,
        timeout=240,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    # found by a plain connection before the data loads or Ray starts, not by MLflow's
    # retries with backoff
    assert last == (
        f"automl-runner: error: tracking.uri=http://127.0.0.1:{port}: cannot open the MLflow "
        f"store: no server answers at 127.0.0.1:{port} (Connection refused)"
    )
    assert "Ray" not in out.stderr
