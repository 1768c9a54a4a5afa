"""The nodes of a cluster as the driver sees them: which are up, and a watcher that says on
the console when the autoscaler adds or removes one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..config.schema import ClusterCompute
from ..errors import ComputeError

log = logging.getLogger(__name__)

# how often the watcher asks the head which nodes are alive
WATCH_INTERVAL_S = 1.0
# Ray's resource that only the head node holds
HEAD_RESOURCE = "node:__internal_head__"


@dataclass(frozen=True)
class Node:
    node_id: str
    host: str
    cpus: float
    head: bool

    @property
    def name(self) -> str:
        """host/short id, as an iteration's automl.node tag names it (engine.ray_executor)."""
        return f"{self.host}/{short_id(self.node_id)}"


def short_id(node_id: str) -> str:
    """The end of a Ray node id: unique (the fake provider's ids share their beginning)."""
    return node_id[-12:]


def alive_nodes() -> list[Node]:
    import ray

    return [
        Node(
            n["NodeID"],
            n.get("NodeManagerHostname") or n.get("NodeManagerAddress", ""),
            float(n.get("Resources", {}).get("CPU", 0.0)),
            HEAD_RESOURCE in n.get("Resources", {}),
        )
        for n in ray.nodes()
        if n.get("Alive")
    ]


def worker_nodes() -> list[Node]:
    """The alive nodes iterations can run on: with CPUs (compute=cluster's head has none;
    a node that has just registered reports its CPUs a moment later)."""
    return [n for n in alive_nodes() if n.cpus > 0]


def wait_for_workers(compute: ClusterCompute) -> None:
    """compute.min_nodes worker nodes up within compute.timeout_minutes (the head's
    autoscaler launches them: min_workers of the launcher config)."""
    deadline = time.monotonic() + compute.timeout_minutes * 60
    while (up := len(worker_nodes())) < compute.min_nodes:
        if time.monotonic() >= deadline:
            raise ComputeError(
                f"compute.min_nodes={compute.min_nodes}: only {up} worker node(s) came up "
                f"within compute.timeout_minutes={compute.timeout_minutes:g}; see `automl-ctl "
                f"cluster status` and the provider's quota"
            )
        log.info("waiting for worker nodes: %d of %d up", up, compute.min_nodes)
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))


@contextmanager
def watched(name: str) -> Iterator[None]:
    """While inside, a thread logs each node that joins or leaves cluster `name`."""
    stop = threading.Event()
    known = {n.node_id: n for n in worker_nodes()}
    started = time.monotonic()

    def watch() -> None:
        while not stop.wait(WATCH_INTERVAL_S):
            try:
                now = {n.node_id: n for n in worker_nodes()}
            except Exception as ex:  # the head is going away with the run: stop quietly
                log.debug("node watcher: %s", ex)
                return
            at = time.monotonic() - started
            for node_id in now.keys() - known.keys():
                log.info(
                    "cluster %s: node %s joined after %.0f s (%d worker node(s), %g CPUs)",
                    name,
                    now[node_id].name,
                    at,
                    len(now),
                    sum(n.cpus for n in now.values()),
                )
            for node_id in known.keys() - now.keys():
                log.info(
                    "cluster %s: node %s left after %.0f s (%d worker node(s))",
                    name,
                    known[node_id].name,
                    at,
                    len(now),
                )
            known.clear()
            known.update(now)

    thread = threading.Thread(target=watch, name="automl-node-watcher", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
