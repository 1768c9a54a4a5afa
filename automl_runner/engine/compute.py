"""Connect to the compute target named by the ``compute`` group: always a Ray instance."""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..config.schema import ClusterCompute, ComputeConfig, LocalCompute, RayCompute
from ..errors import ComputeError, Terminated, first_line
from . import fake_cluster, nodes, provision
from .launcher_config import FAKE_HEAD_IP

log = logging.getLogger(__name__)


@dataclass
class Cluster:
    address: str
    nodes: int
    cpus: float

    def slots(self, cpus_per_iteration: float) -> int:
        """How many iterations fit at once."""
        return max(1, math.floor(self.cpus / cpus_per_iteration + 1e-9))


def _alive_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def _owner_settings(compute: ComputeConfig) -> dict[str, Any]:
    """Ray settings read by the owner of the iterations' tasks, this driver.

    Ray reruns a task its memory monitor killed `task_oom_retries` times, apart from
    max_retries and by default forever: an iteration allocating past its node's threshold
    was killed and rerun until its timeout, then recorded TIMEOUT with nothing about
    memory. compute.max_retries bounds those reruns too, and the record says memory
    (engine.task_errors). Ray's own report of each rerun (dozens of lines printed amid the
    console table) is left out: the iteration's record carries the reason. A process
    connected to Ray before the runner (the Python API after the user's own ray.init)
    keeps what that connection set.
    """
    return {
        "task_oom_retries": compute.max_retries,
        "enable_output_error_log_if_still_retry": False,
    }


@contextmanager
def _owner_environment(settings: dict[str, Any]) -> Iterator[None]:
    """`settings` as RAY_<name> variables while this driver connects to a cluster.

    A local instance takes them in its system config; a driver joining a cluster reads
    them from its own environment when it connects (its core worker's config), unless
    the cluster was started with them in its --system-config (that wins). A variable the
    user set already is kept.
    """
    added = {
        f"RAY_{name}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in settings.items()
        if f"RAY_{name}" not in os.environ
    }
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def keep_local_ray_on_loopback() -> None:
    """A single-machine Ray instance listens on 127.0.0.1, not this machine's outward IP.

    Ray reads the setting once, when it is imported; a process that imported Ray already
    keeps Ray's default.
    """
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@contextmanager
def connect(compute: ComputeConfig) -> Iterator[Cluster]:
    """Start or join Ray; shut down on exit only what was started here.

    compute=cluster brings its cluster up first (or finds it up), says on the console
    when nodes join and leave, and tears it down on exit if it was brought up here and
    compute.keep is false.
    """
    if not isinstance(compute, ClusterCompute):
        with _joined(compute, None) as cluster:
            yield cluster
        return
    if compute.provider == "fake":
        fake_cluster.use_token()
    if compute.address:
        state, ours = None, False
    else:
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            # it would run on that instance, not on the cluster it brought up
            raise ComputeError(
                "compute=cluster: this process is connected to a Ray instance already (a "
                "sweep's hydra/launcher=ray, or ray.init in a notebook); ray.shutdown() first, "
                "or bring the cluster up with `automl-ctl cluster up` and sweep with the "
                "basic launcher"
            )
        state, ours = provision.up(compute)
    address = compute.address or (state.address if state else "auto")
    try:
        with _joined(compute, address) as cluster, nodes.watched(compute.cluster_name):
            yield cluster
    finally:
        if ours and not compute.keep:
            provision.down_quietly(compute)
        elif ours:
            log.info(
                "cluster %s stays up (compute.keep=true); end it with: automl-ctl cluster down "
                "compute=cluster compute.provider=%s compute.cluster_name=%s",
                compute.cluster_name,
                compute.provider,
                compute.cluster_name,
            )


@contextmanager
def _joined(compute: ComputeConfig, address: str | None) -> Iterator[Cluster]:
    """Start a local Ray or join the cluster at `address` (compute.address for
    compute=ray); shut down on exit only what was started here."""
    if isinstance(compute, LocalCompute):
        keep_local_ray_on_loopback()
    import ray

    started = False
    if ray.is_initialized():
        log.debug("reusing the Ray instance this process is already connected to")
    else:
        common: dict[str, Any] = dict(
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
        common.update(compute.init)
        if isinstance(compute, LocalCompute):
            # Ray's workers start when the first iterations are submitted, not when the
            # driver connects: the data goes into the object store before that, and the
            # moment of the put (the data twice) then has no idle worker processes beside
            system = {
                "prestart_worker_first_driver": False,
                **_owner_settings(compute),
                **common.get("_system_config", {}),
            }
            common["_system_config"] = system
            # "local" starts a fresh instance even when a cluster is running on this machine
            with _sigterm_handler_kept():
                ray.init(address="local", num_cpus=compute.num_cpus, **common)
        else:
            address = address or getattr(compute, "address", None) or "auto"
            _probe(address)
            settings = _owner_settings(compute)
            node_ip = getattr(compute, "node_ip_address", None)
            if isinstance(compute, ClusterCompute) and compute.provider == "fake":
                # the fake head runs on loopback (fake_cluster.use_token: its token)
                node_ip = FAKE_HEAD_IP
            if node_ip:
                common["_node_ip_address"] = node_ip
            try:
                with _owner_environment(settings), _sigterm_handler_kept():
                    ray.init(address=address, **common)
            except Exception as ex:
                raise ComputeError(_join_failure(address, ex)) from ex
        started = True
    try:
        if isinstance(compute, ClusterCompute):
            nodes.wait_for_workers(compute)
            cluster = Cluster(
                address=_gcs_address(ray),
                nodes=len(nodes.worker_nodes()),
                # what the autoscaler may grow it to: iterations that do not fit yet wait
                # for the nodes they ask for
                cpus=float(compute.max_nodes * compute.cpus_per_node),
            )
        else:
            if not isinstance(compute, LocalCompute):
                _wait_for_nodes(compute.min_nodes, compute.timeout_minutes)
            cluster = Cluster(
                address=_gcs_address(ray),
                nodes=len(_alive_nodes()),
                cpus=float(ray.cluster_resources().get("CPU", 0.0)),
            )
        if cluster.cpus < compute.cpus_per_iteration:
            raise ComputeError(
                f"compute.cpus_per_iteration={compute.cpus_per_iteration}: the cluster has only "
                f"{cluster.cpus:g} CPUs"
            )
        yield cluster
    finally:
        if started:
            _shutdown(ray)


@contextmanager
def _sigterm_handler_kept() -> Iterator[None]:
    """ray.init() replaces the driver's SIGTERM handler with one that exits with code 15,
    past the handler that ends the run KILLED: a handler set from Python before it is put
    back, and a SIGTERM during ray.init() itself is raised as Terminated."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    except SystemExit as ex:
        if ex.code == signal.SIGTERM:
            raise Terminated from None
        raise
    finally:
        if callable(before):
            signal.signal(signal.SIGTERM, before)


def _shutdown(ray: Any) -> None:
    """ray.shutdown(), which a Ctrl-C does not cut short: the run has ended already, and
    a KeyboardInterrupt from inside Ray's teardown would only print its traceback."""
    if threading.current_thread() is not threading.main_thread():
        ray.shutdown()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ray.shutdown()
    finally:
        signal.signal(signal.SIGINT, previous)


def _gcs_address(ray: Any) -> str:
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # a Ray Client connection (ray://) has no GCS address of its own
        return ""


def _wait_for_nodes(min_nodes: int, timeout_minutes: float) -> None:
    deadline = time.monotonic() + timeout_minutes * 60
    while True:
        alive = len(_alive_nodes())
        if alive >= min_nodes:
            return
        if time.monotonic() >= deadline:
            raise ComputeError(
                f"compute.min_nodes={min_nodes}: only {alive} node(s) joined within "
                f"compute.timeout_minutes={timeout_minutes:g}; add nodes with "
                "`ray start --address=HEAD:PORT` or lower min_nodes"
            )
        log.info("waiting for nodes: %d of %d joined", alive, min_nodes)
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))


def probe(compute: ComputeConfig) -> None:
    """compute=ray: fail in seconds, not after Ray's minute of retries, when nothing listens
    at compute.address. The setup asks before it opens the MLflow store (a run that cannot
    start leaves no store behind); connect() asks again for its other callers."""
    if isinstance(compute, RayCompute):
        _probe(compute.address)


def _probe(address: str) -> None:
    import socket

    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as ex:
        raise ComputeError(
            f"compute.address={address}: cannot join a Ray cluster there ({ex.strerror or ex}); "
            "start one with `ray start --head` and pass the address it prints"
        ) from ex


def _join_failure(address: str, ex: BaseException) -> str:
    chain: list[str] = []
    while ex is not None and len(chain) < 5:
        chain.append(str(ex))
        ex = ex.__cause__ or ex.__context__  # type: ignore[assignment]
    text = " ".join(chain)
    if "InvalidAuthToken" in text or "Authentication token" in text:
        hint = (
            "the cluster uses token authentication: set RAY_AUTH_MODE=token and make its "
            "token available (~/.ray/auth_token or RAY_AUTH_TOKEN)"
        )
    else:
        hint = "start one with `ray start --head` and pass the address it prints"
    first = first_line(RuntimeError(chain[0])) if chain and chain[0].strip() else "no answer"
    return f"compute.address={address}: cannot join a Ray cluster there ({first}); {hint}"
