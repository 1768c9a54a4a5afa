"""A real multi-node Ray cluster on one machine, kept on loopback, for system tests.

Every node (head and workers) takes the address 127.0.0.2, which Ray does not swap for
this machine's outward IP as it does 127.0.0.1, and drivers say so with
compute.node_ip_address. Clients present the token that `ray start` enables. Nodes run
the tests' own interpreter (`python -m ray.scripts.scripts start`, not whatever `ray` is
on PATH), so their workers import the package under test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from automl_runner.engine.fake_cluster import ensure_token

NODE_IP = "127.0.0.2"
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
    "RAY_AUTH_MODE": "token",
    "RAY_USAGE_STATS_ENABLED": "0",
}


HEAD_ATTEMPTS, HEAD_TIMEOUT_S = 2, 90
WORKER_ATTEMPTS, WORKER_TIMEOUT_S = 2, 90


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free now (held together while chosen, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


class LoopbackCluster:
    """`ray start --head` plus `ray start --address=...` worker nodes, each one process.

    With `jobs=True` the head serves the Ray Jobs API (the dashboard) at `jobs_address`;
    jobs run in `cwd` (their Hydra outputs land there).
    """

    def __init__(self, head_cpus: int = 1, jobs: bool = False, cwd: Path | None = None) -> None:
        self.cwd = cwd or Path(tempfile.mkdtemp(prefix="loopback-ray-"))
        self.workers: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        # `ray start` refuses token mode without a token, as on a fresh machine
        ensure_token({**os.environ, **RAY_ENV})
        # a head that does not come up (a port taken between choosing and binding it, a
        # GCS that never answers) is killed and started once more on other ports
        for _ in range(HEAD_ATTEMPTS):
            self._start_head(head_cpus, jobs)
            if self._reaches(1, HEAD_TIMEOUT_S):
                break
            self.kill(self.head)
        else:
            pytest.fail(
                f"the loopback Ray head did not come up in {HEAD_ATTEMPTS} attempts; "
                + self._log_tail()
            )
        if jobs:
            self._wait_for_jobs_api()

    def _start_head(self, cpus: int, jobs: bool) -> None:
        self.port, client, dashboard, agent = free_ports(4)
        self.address = f"{NODE_IP}:{self.port}"
        head = ["--head", f"--port={self.port}", f"--ray-client-server-port={client}"]
        self.jobs_address = None
        if jobs:
            head += [
                "--include-dashboard=true",
                f"--dashboard-host={NODE_IP}",
                f"--dashboard-port={dashboard}",
                f"--dashboard-agent-listen-port={agent}",
            ]
            self.jobs_address = f"http://{NODE_IP}:{dashboard}"
        else:
            head.append("--include-dashboard=false")
        self.head = self._start(head, cpus)

    def _start(self, args: list[str], cpus: int) -> subprocess.Popen:
        # each node its own ports: two nodes of one machine on Ray's fixed defaults (the
        # agent's 52365), or on ports another Ray here holds, can keep one from joining
        node_manager, object_manager, metrics, agent, agent_grpc, runtime_env = free_ports(6)
        args = [
            *args,
            f"--node-manager-port={node_manager}",
            f"--object-manager-port={object_manager}",
            f"--metrics-export-port={metrics}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}",
        ]
        if not any(a.startswith("--dashboard-agent-listen-port") for a in args):
            args.append(f"--dashboard-agent-listen-port={agent}")
        log = self.cwd / f"node-{len(self.workers)}-{node_manager}.log"
        self.logs.append(log)
        with open(log, "ab") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ray.scripts.scripts",
                    "start",
                    "--block",
                    f"--node-ip-address={NODE_IP}",
                    f"--num-cpus={cpus}",
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **RAY_ENV},
                cwd=self.cwd,
                start_new_session=True,
            )

    def add_worker(self, cpus: int = 1) -> subprocess.Popen:
        """One more node; one that does not join is killed and started once more."""
        n = 2 + len(self.workers)
        for _ in range(WORKER_ATTEMPTS):
            worker = self._start([f"--address={self.address}"], cpus)
            if self._reaches(n, WORKER_TIMEOUT_S):
                self.workers.append(worker)
                return worker
            self.kill(worker)
        self.stop()
        pytest.fail(f"the loopback Ray cluster did not reach {n} node(s); {self._log_tail()}")

    def nodes(self, at_least: int = 0, timeout: float = 60) -> list[str]:
        """Alive node ids, asked from a separate driver; with `at_least`, that driver
        asks every half second until that many are alive or `timeout` passes (one
        process, not one a poll)."""
        return self._alive_once(f"len(alive) >= {at_least}", timeout)

    def nodes_without(self, node_id: str, timeout: float = 90) -> list[str]:
        """Alive node ids once the head reports `node_id` dead (or `timeout` passes)."""
        return self._alive_once(f"{node_id!r} not in alive", timeout)

    def head_node(self) -> str:
        """The head's node id (the node that holds Ray's head resource)."""
        return self._alive_once("True", 60, head_only=True)[0]

    def _alive_once(self, condition: str, timeout: float, head_only: bool = False) -> list[str]:
        """Alive node ids (with `head_only`, the head's) once `condition` holds of `alive`."""
        head = " and 'node:__internal_head__' in n['Resources']" if head_only else ""
        code = (
            "import sys, time, ray\n"
            f"ray.init(address='{self.address}', _node_ip_address='{NODE_IP}')\n"
            f"deadline = time.monotonic() + {timeout}\n"
            "while True:\n"
            f"    alive = [n['NodeID'] for n in ray.nodes() if n['Alive']{head}]\n"
            f"    if ({condition}) or time.monotonic() >= deadline:\n"
            "        break\n"
            "    time.sleep(0.5)\n"
            "print('ALIVE', *alive)\n"
        )
        try:
            out = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                timeout=timeout + 60,
                env={**os.environ, **RAY_ENV},
            )
        except subprocess.TimeoutExpired:
            return []  # a head not (yet) answering: ray.init keeps retrying
        if out.returncode != 0:
            return []
        # Ray prints the head's news (a node marked dead) on the same stdout
        lines = [line.split() for line in out.stdout.splitlines()]
        return next((line[1:] for line in lines if line[:1] == ["ALIVE"]), [])

    def _reaches(self, n: int, timeout: float) -> bool:
        """Whether `n` nodes are alive within `timeout` s (False at once if the head died)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.head.poll() is None:
            left = max(1.0, deadline - time.monotonic())
            if len(self.nodes(at_least=n, timeout=left)) >= n:
                return True
            time.sleep(1)  # the driver could not connect yet: the head is still starting
        return False

    def _log_tail(self) -> str:
        """The last lines `ray start` printed, newest node first (why one did not come up)."""
        for log in reversed(self.logs):
            lines = log.read_text(errors="replace").strip().splitlines()
            if lines:
                return f"{log.name} ends: " + " | ".join(lines[-5:])
        return "the nodes printed nothing"

    def _wait_for_jobs_api(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.jobs_address}/api/version", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (asking for the token): it is up
            except OSError:
                time.sleep(0.5)
        self.stop()
        pytest.fail(f"the Ray Jobs API at {self.jobs_address} did not come up")

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL a node as if its machine died: `ray start`, its process group (the
        raylet, the object store) and every process below it. Ray's worker processes
        are not in that group: one left alive went on fitting its iteration after its
        node was gone."""
        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        proc.wait(timeout=30)
        psutil.wait_procs(tree, timeout=30)

    def stop(self) -> None:
        for proc in [*self.workers, self.head]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.head]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill(proc)

    def overrides(self) -> list[str]:
        return [
            "compute=ray",
            f"compute.address={self.address}",
            f"compute.node_ip_address={NODE_IP}",
        ]


class MlflowServer:
    """`mlflow server` on 127.0.0.1, as a user runs it: a SQLite backend and an artifact
    folder under `root`. It can be stopped and started again on the same port and store
    (a restart, as in an outage)."""

    def __init__(self, root: Path, port: int | None = None, backend: str | None = None) -> None:
        """`backend`: an existing store to serve (as `mlflow ui --backend-store-uri`
        does), else a fresh one under `root`."""
        self.root, self.port = root, port or free_port()
        self.backend = backend
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = root / "server.log"

    def start(self, timeout: float = 120) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--backend-store-uri",
                    self.backend or f"sqlite:///{self.root / 'server.db'}",
                    *(
                        []
                        if self.backend
                        else ["--artifacts-destination", str(self.root / "artifacts")]
                    ),
                    "--workers",
                    "1",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                # its own group: stop() ends the server's worker processes too
                start_new_session=True,
                # no job runner (two more processes importing MLflow): the tests use none
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        pytest.fail(f"mlflow server did not start; see {self.log}")

    def stop(self) -> None:
        """Kill the server at once (SIGKILL of its process group), as a crash would."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
