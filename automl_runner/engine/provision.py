"""Bring a compute=cluster cluster up, find it again, tear it down: through Ray's own
cluster launcher (``ray.autoscaler.sdk``: ``ray up`` / ``ray down``), ``kubectl`` for a
KubeRay RayCluster, or, for the fake provider, a ``ray start --head`` whose autoscaler
starts and stops node processes on this machine.

The rendered config and what the cluster is (its head's address, its dashboard) are kept
under ``compute.state_dir``/<cluster_name>, so a cluster that outlives one experiment
(``automl-ctl cluster up``, ``compute.keep=true``) is found by the next command that names
it, and ``automl-ctl cluster down`` ends it from any folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config.schema import ClusterCompute
from ..errors import ComputeError, first_line
from . import fake_cluster, launcher_config

log = logging.getLogger(__name__)


@dataclass
class ClusterState:
    """What a command that finds the cluster again needs: written once it is up."""

    name: str
    provider: str
    # the head as a driver joins it: HOST:PORT, or ray://HOST:10001 off the cluster
    address: str
    # the Ray Jobs API (automl-ctl submit), http://HOST:PORT; None where unknown
    dashboard: str | None
    # the rendered launcher config or manifest
    config_path: str
    started: float
    # fake provider: the value of MARKER its processes carry, and its Ray temp folder
    marker: str | None = None
    temp_dir: str | None = None
    # fake provider: the session (the head's `ray start`, its leader) its processes are in
    session: int | None = None


def cluster_dir(c: ClusterCompute) -> Path:
    return Path(c.state_dir).expanduser() / c.cluster_name


def _state_file(c: ClusterCompute) -> Path:
    return cluster_dir(c) / "state.json"


def read_state(c: ClusterCompute) -> ClusterState | None:
    """The cluster of this name that is up, or None (a state left by a cluster that is
    gone, say after a reboot, is removed)."""
    path = _state_file(c)
    if not path.is_file():
        return None
    state = ClusterState(**json.loads(path.read_text()))
    if state.provider == "fake" and not fake_cluster.answers(state.address):
        log.info("cluster %s is gone (nothing answers at %s)", c.cluster_name, state.address)
        fake_cluster.stop(state.marker)  # its session id may be reused by now
        path.unlink(missing_ok=True)
        return None
    return state


def render_to_file(c: ClusterCompute) -> Path:
    """Write the provider's config for `c` under the cluster's folder; its path."""
    from importlib.metadata import version

    import yaml

    config = launcher_config.render(c, version("ray"), version("automl-runner"))
    folder = cluster_dir(c)
    folder.mkdir(parents=True, exist_ok=True)
    name = "raycluster.yaml" if c.provider == "kubernetes" else "launcher.yaml"
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def _locked(c: ClusterCompute) -> Iterator[None]:
    """One command at a time brings this cluster up or down (two runs started together
    would otherwise both start a head)."""
    import fcntl

    folder = cluster_dir(c)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(c: ClusterCompute) -> tuple[ClusterState, bool]:
    """Bring the cluster up, or find it up already; (its state, whether it was started here)."""
    with _locked(c):
        return _up(c)


def _up(c: ClusterCompute) -> tuple[ClusterState, bool]:
    state = read_state(c)
    if state is not None:
        return state, False
    path = render_to_file(c)
    log.info("bringing cluster %s up (%s, config %s)", c.cluster_name, c.provider, path)
    started = time.monotonic()
    if c.provider == "fake":
        head = fake_cluster.start_head(c, path, cluster_dir(c))
        state = ClusterState(
            name=c.cluster_name,
            provider="fake",
            address=head.address,
            dashboard=head.dashboard,
            config_path=str(path),
            started=time.time(),
            marker=head.marker,
            temp_dir=head.temp_dir,
            session=head.session,
        )
    elif c.provider == "kubernetes":
        state = _kubernetes_up(c, path)
    else:
        state = _launcher_up(c, path)
    _state_file(c).write_text(json.dumps(asdict(state), indent=2))
    log.info(
        "cluster %s is up in %.1f s: head %s",
        c.cluster_name,
        time.monotonic() - started,
        state.address,
    )
    return state, True


def down(c: ClusterCompute) -> bool:
    """Tear the cluster down (head and every node); False if it was not up."""
    with _locked(c):
        return _down(c)


def down_quietly(compute: ClusterCompute) -> None:
    """provision.down, which a Ctrl-C does not cut short: the nodes must go either way."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        down(compute)
    except Exception as ex:
        log.warning(
            "cluster %s was not torn down: %s; run automl-ctl cluster down",
            compute.cluster_name,
            first_line(ex),
        )
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _down(c: ClusterCompute) -> bool:
    path = _state_file(c)
    state = ClusterState(**json.loads(path.read_text())) if path.is_file() else None
    if state is None:
        return False
    log.info("tearing cluster %s down", c.cluster_name)
    if state.provider == "fake":
        fake_cluster.stop(state.marker, state.session)
        if state.temp_dir:
            shutil.rmtree(state.temp_dir, ignore_errors=True)
    elif state.provider == "kubernetes":
        _kubectl(["delete", "-f", state.config_path, "--ignore-not-found"], c)
    else:
        from ray.autoscaler.sdk import teardown_cluster

        teardown_cluster(state.config_path)
    path.unlink(missing_ok=True)
    return True


@dataclass
class ClusterStatus:
    state: ClusterState
    # (node name, CPUs, whether it is the head) of every alive node
    nodes: list[tuple[str, float, bool]]

    def __str__(self) -> str:
        workers = [n for n in self.nodes if not n[2]]
        lines = [
            (
                "cluster",
                f"{self.state.name} ({self.state.provider}), up since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.state.started))}",
            ),
            ("head", self.state.address),
            ("dashboard", self.state.dashboard or "-"),
            ("worker nodes", f"{len(workers)}, {sum(n[1] for n in workers):g} CPUs"),
        ]
        lines += [("node", f"{name}, {cpus:g} CPUs") for name, cpus, _ in workers]
        lines.append(("config", self.state.config_path))
        return "\n".join(f"{label + ':':<17}{text}" for label, text in lines)


def status(c: ClusterCompute) -> ClusterStatus | None:
    """The cluster of this name and its nodes, asked from its head; None if it is not up."""
    state = read_state(c)
    if state is None:
        return None
    if c.provider == "fake":
        fake_cluster.use_token()
    import ray

    from .nodes import alive_nodes

    kwargs: dict[str, Any] = dict(
        include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )
    if state.provider == "fake":
        kwargs["_node_ip_address"] = launcher_config.FAKE_HEAD_IP
    ray.init(address=state.address, **kwargs)
    try:
        found = [(n.name, n.cpus, n.head) for n in alive_nodes()]
    finally:
        ray.shutdown()
    return ClusterStatus(state, found)


# --- clouds: Ray's cluster launcher --------------------------------------------------------
def _launcher_up(c: ClusterCompute, config: Path) -> ClusterState:
    try:
        from ray.autoscaler.sdk import create_or_update_cluster, get_head_node_ip

        create_or_update_cluster(str(config), no_restart=False, restart_only=False)
        head = get_head_node_ip(str(config))
    except Exception as ex:
        raise ComputeError(
            f"compute.provider={c.provider}: Ray's cluster launcher could not bring "
            f"{c.cluster_name} up ({first_line(ex)}); {PROVIDER_NEEDS[c.provider]}"
        ) from ex
    return ClusterState(
        name=c.cluster_name,
        provider=c.provider,
        address=f"ray://{head}:{launcher_config.CLIENT_PORT}",
        dashboard=f"http://{head}:8265",
        config_path=str(config),
        started=time.time(),
    )


# what each provider needs on the machine that brings a cluster up (README: cluster)
PROVIDER_NEEDS = {
    "aws": "it needs `pip install 'ray[aws]'` and AWS credentials (aws configure)",
    "gcp": "it needs `pip install 'ray[gcp]'` and `gcloud auth application-default login`",
    "azure": "it needs `pip install 'ray[azure]'`, `az login` and an SSH key in ~/.ssh/id_rsa",
    "kubernetes": "it needs kubectl on PATH, a cluster context and the KubeRay operator",
}


# --- kubernetes: a KubeRay RayCluster ------------------------------------------------------
def _kubectl(args: list[str], c: ClusterCompute, timeout: float = 120) -> str:
    if shutil.which("kubectl") is None:
        raise ComputeError(f"compute.provider=kubernetes: {PROVIDER_NEEDS['kubernetes']}")
    out = subprocess.run(
        ["kubectl", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise ComputeError(
            f"compute.provider=kubernetes: kubectl {args[0]} failed: "
            f"{first_line(RuntimeError(out.stderr or out.stdout))}"
        )
    return out.stdout


def _kubernetes_up(c: ClusterCompute, manifest: Path) -> ClusterState:
    _kubectl(["apply", "-f", str(manifest)], c)
    deadline = time.monotonic() + c.timeout_minutes * 60
    while True:
        state = _kubectl(
            ["get", "raycluster", c.cluster_name, "-o", "jsonpath={.status.state}"], c
        ).strip()
        if state == "ready":
            break
        if time.monotonic() >= deadline:
            raise ComputeError(
                f"compute.timeout_minutes={c.timeout_minutes:g}: RayCluster {c.cluster_name} "
                f"is {state or 'not ready'}"
            )
        time.sleep(5)
    # the head's service, as KubeRay names it: reachable from inside the kubernetes
    # cluster; from outside, port-forward it and set compute.address
    service = f"{c.cluster_name}-head-svc"
    return ClusterState(
        name=c.cluster_name,
        provider="kubernetes",
        address=f"ray://{service}:{launcher_config.CLIENT_PORT}",
        dashboard=f"http://{service}:8265",
        config_path=str(manifest),
        started=time.time(),
    )
