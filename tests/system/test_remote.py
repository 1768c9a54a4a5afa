"""compute=ray against a cluster started with `ray start`, tracking=server against `mlflow server`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import mlflow_runs
from mlflow import MlflowClient

from system.test_cli import cli

# Keep every Ray address on loopback (Ray would swap 127.0.0.1 for this machine's outward
# IP), and let clients present the token that `ray start` enables.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A one-node Ray cluster on 127.0.0.1, started the way a user starts a head node."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "ray",
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **RAY_ENV},
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import ray; ray.init(address='{address}'); print(len(ray.nodes()))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **RAY_ENV},
        )
        if probe.returncode == 0:
            break
        time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"ray head did not come up: {probe.stderr[-2000:]}")
    yield address
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.cluster
@pytest.mark.slow
def test_compute_ray_joins_an_existing_cluster(ray_head, tmp_path):
    out = cli(
        [
            "compute=ray",
            f"compute.address={ray_head}",
            "compute.cluster_name=test-cluster",
            "data=wine",
            "automl.iterations=4",
        ],
        tmp_path,
        env=RAY_ENV,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    db = tmp_path / "outputs" / "mlflow" / "mlflow.db"
    uri = f"sqlite:///{db}"
    exp = MlflowClient(uri).get_experiment_by_name("automl-wine")
    parents, children = mlflow_runs(uri, exp.experiment_id)
    assert len(parents) == 1 and len(children) == 4
    assert parents[0].data.params["compute.address"] == ray_head
    assert parents[0].data.params["compute.cluster_name"] == "test-cluster"


@pytest.mark.cluster
def test_min_nodes_not_reached_fails_with_one_line(ray_head, tmp_path):
    start = time.monotonic()
    out = cli(
        [
            "compute=ray",
            f"compute.address={ray_head}",
            "compute.min_nodes=2",
            "compute.timeout_minutes=0.1",
            "automl.iterations=1",
        ],
        tmp_path,
        env=RAY_ENV,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "automl-runner: error: compute.min_nodes=2: only 1 node(s) joined within "
        "compute.timeout_minutes=0.1; add nodes with `ray start --address=HEAD:PORT` or lower min_nodes"
    )
    assert time.monotonic() - start < 60


@pytest.mark.cluster
def test_unreachable_cluster_fails_with_one_line(tmp_path):
    port = free_port()
    out = cli(
        ["compute=ray", f"compute.address=127.0.0.1:{port}", "automl.iterations=1"],
        tmp_path,
        env=RAY_ENV,
        timeout=180,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"automl-runner: error: compute.address=127.0.0.1:{port}: cannot join a Ray cluster there"
    )


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'server.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


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
        ["tracking=server", f"tracking.uri=http://127.0.0.1:{port}", "automl.iterations=1"],
        tmp_path,
        timeout=240,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"automl-runner: error: tracking.uri=http://127.0.0.1:{port}: cannot open the MLflow store"
    )
