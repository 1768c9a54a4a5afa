"""Ray's fake multi-node provider as a cluster: a `ray start --head` on 127.0.0.2 whose
autoscaler starts and stops node processes on this machine, for tests and for trying a
compute=cluster config out. Its processes are known by the marker variable they carry and
the head's session, so tear-down ends all of them and nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.schema import ClusterCompute
from ..errors import ComputeError
from . import launcher_config

# the processes of a fake cluster carry this variable (its value names the cluster) or
# belong to its head's session: tear-down finds all of them, and only them, whatever
# became of their parents (Ray's agents on the fake nodes drop the environment)
MARKER = "AUTOML_RUNNER_CLUSTER"
# the fake head's autoscaler looks at the demand this often (Ray's default is 5 s)
FAKE_UPDATE_INTERVAL_S = 1
# how long processes get to exit on SIGTERM before they are killed (Ray's GCS server and
# autoscaler of a fake head ignore it)
STOP_GRACE_S = 5.0


def use_token() -> None:
    """A driver of a fake cluster presents the token its `ray start` enabled.

    Ray reads the mode once, when it is imported: a process that imported Ray already
    needs RAY_AUTH_MODE=token in its environment from the start.
    """
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def ensure_token(env: dict[str, str]) -> None:
    """Make the token a `ray start --head` with RAY_AUTH_MODE=token needs, if there is none.

    Ray (2.5x on) makes one for the local cluster of a bare `ray.init()` but refuses to
    start a head without one: on a fresh machine the fake head would not come up. This is
    `ray get-auth-token --generate`, which keeps a token that exists. A Ray without that
    command (older, no token mode) is left to say what it lacks when the head starts.
    """
    subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


@dataclass(frozen=True)
class FakeHead:
    """What finds a fake cluster again: its head, and how to know its processes."""

    address: str
    dashboard: str
    marker: str
    temp_dir: str
    # the session its processes are in: the head's `ray start`, their leader
    session: int


def start_head(c: ClusterCompute, config: Path, folder: Path) -> FakeHead:
    """`ray start --head` with the rendered autoscaling `config`, its autoscaler starting
    and stopping node processes here; returns once the head answers."""
    if answers(f"{launcher_config.FAKE_HEAD_IP}:{c.head_port}"):
        raise ComputeError(
            f"compute.head_port={c.head_port}: something listens there already; "
            "pick another port for the fake cluster's head"
        )
    client, dashboard, agent = _free_ports(3)
    marker = f"{c.cluster_name}/{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": str(FAKE_UPDATE_INTERVAL_S),
        "RAY_USAGE_STATS_ENABLED": "0",
        # the token `ray start` enables, said outright: the jobs' drivers present it
        "RAY_AUTH_MODE": "token",
        # a head on 127.0.0.2, not swapped for this machine's outward address
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
        MARKER: marker,
    }
    head_log = folder / "head.log"
    ensure_token(env)
    # its own Ray temp folder: not /tmp/ray, whose ray_current_cluster file would send
    # other drivers' address="auto" to this cluster; short, for Ray's socket paths
    temp_dir = tempfile.mkdtemp(prefix="automl-ray-")
    command = [
        # this interpreter's Ray, so the nodes' workers import the same runner
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        f"--node-ip-address={launcher_config.FAKE_HEAD_IP}",
        f"--port={c.head_port}",
        "--num-cpus=0",
        f"--ray-client-server-port={client}",
        "--include-dashboard=true",
        f"--dashboard-host={launcher_config.FAKE_HEAD_IP}",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={agent}",
        f"--autoscaling-config={config}",
        f"--temp-dir={temp_dir}",
    ]
    with open(head_log, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
            # its own session: a Ctrl-C of the command that started it does not reach it
            start_new_session=True,
        )
    address = f"{launcher_config.FAKE_HEAD_IP}:{c.head_port}"
    deadline = time.monotonic() + c.timeout_minutes * 60
    try:
        while not answers(address):
            if proc.poll() is not None or time.monotonic() >= deadline:
                tail = head_log.read_text(errors="replace").strip().splitlines()[-1:]
                raise ComputeError(
                    "compute.provider=fake: the head did not come up "
                    f"({' '.join(tail) or 'no output'}); see {head_log}"
                )
            time.sleep(0.5)
    except BaseException:
        # no state is written for a head that did not come up (or a Ctrl-C meanwhile):
        # nothing could tear it down later
        stop(marker, proc.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return FakeHead(
        address, f"http://{launcher_config.FAKE_HEAD_IP}:{dashboard}", marker, temp_dir, proc.pid
    )


def cluster_processes(marker: str | None, session: int | None) -> list[Any]:
    """The processes of a fake cluster: those that carry MARKER=`marker` or are in the
    head's `session`."""
    import psutil

    if not marker and not session:
        return []
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if (session and os.getsid(proc.pid) == session) or (
                marker and proc.environ().get(MARKER) == marker
            ):
                found.append(proc)
    return found


def stop(marker: str | None, session: int | None = None) -> None:
    """SIGTERM every process of the fake cluster, SIGKILL what is left after the grace."""
    import psutil

    procs = cluster_processes(marker, session)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=STOP_GRACE_S)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=STOP_GRACE_S)
    # a worker forked while the others stopped
    for proc in cluster_processes(marker, session):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def answers(address: str) -> bool:
    """Whether something listens at HOST:PORT."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


def _free_ports(n: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind((launcher_config.FAKE_HEAD_IP, 0))
        return [int(s.getsockname()[1]) for s in socks]
