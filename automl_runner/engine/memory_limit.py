"""compute.memory_mb_per_iteration as a limit that holds: every task the executor runs
(iterations, ensembles, the refit, the explanation) runs under ``worker.memory_guard``.

An iteration past its limit comes back as ``MemoryOut`` and is recorded MEMOUT: it is not
rerun, and nothing else on its node is touched. The guard first notes the MEMOUT in Ray's
key-value store (under the run's token and the task's label): if the task's process has
to kill itself, the rerun Ray makes of it returns that note at once, and a task Ray does
not rerun is read back by the driver from the same note.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..worker.memory_guard import MemoryGuard, MemoryLimitExceeded, default_limit_bytes

# the namespace of the notes in Ray's key-value store
NAMESPACE = "automl-runner-memout"
# the log of a task whose process had to end itself past the limit
ENDED_ITSELF = (
    "it did not stop when told (MemoryError) and stayed over its limit, so its process "
    "ended itself; Ray's rerun of the task returned this record at once"
)


@dataclass
class MemoryOut:
    """What a task past its memory limit returns instead of its result."""

    reason: str
    log: str = ""
    # the node it ran on (engine.ray_executor stamps it)
    node: str = ""


@dataclass(frozen=True)
class Limit:
    """The memory limit of one run's tasks: compute.memory_mb_per_iteration, or null for
    a share of each node's memory; `token` keeps the run's notes apart."""

    memory_mb: int | None
    cpus_per_iteration: float
    token: str

    @classmethod
    def for_run(cls, memory_mb: int | None, cpus_per_iteration: float) -> Limit:
        return cls(memory_mb, cpus_per_iteration, uuid.uuid4().hex)

    def here(self) -> int:
        """The limit in bytes on the node this task runs on."""
        if self.memory_mb:
            return int(self.memory_mb) * 2**20
        return default_limit_bytes(_node_cpus(), self.cpus_per_iteration)

    def key(self, label: str) -> str:
        return f"{self.token}/{label}"


_NODE_CPUS: dict[str, float] = {}


def _node_cpus() -> float:
    """CPUs of the Ray node this worker belongs to (asked once per worker process)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    if node not in _NODE_CPUS:
        found = [n for n in ray.nodes() if n.get("NodeID") == node]
        _NODE_CPUS[node] = float(found[0]["Resources"].get("CPU", 1.0)) if found else 1.0
    return _NODE_CPUS[node]


def note(limit: Limit, label: str, reason: str) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(limit.key(label), reason, overwrite=True, namespace=NAMESPACE)


def noted(limit: Limit, label: str) -> str | None:
    """The MEMOUT noted for this task by an earlier attempt, if any (None also where the
    store cannot be read: a Ray Client driver)."""
    from ray.experimental import internal_kv

    try:
        value = internal_kv._internal_kv_get(limit.key(label), namespace=NAMESPACE)
    except Exception:
        return None
    return value.decode() if isinstance(value, bytes) else value


def forget(limit: Limit, label: str) -> None:
    from ray.experimental import internal_kv

    with contextlib.suppress(Exception):
        internal_kv._internal_kv_del(limit.key(label), namespace=NAMESPACE)


def run_limited(limit: Limit, label: str, run: Callable[..., Any], *args: Any) -> Any:
    """`run(*args)` in this task under the memory limit: its result, or MemoryOut."""
    earlier = noted(limit, label)
    if earlier:
        # the attempt before this one passed the limit and had to end its process
        return MemoryOut(earlier, f"{earlier}\n\n{ENDED_ITSELF}")
    guard = MemoryGuard(limit.here(), on_trip=lambda reason: note(limit, label, reason))
    try:
        with guard:
            result = run(*args)
    except MemoryError:
        if not guard.tripped:
            raise
        return MemoryOut(guard.reason(), guard.reason())
    if guard.tripped:
        return MemoryOut(guard.reason(), f"{guard.reason()}\n\n{getattr(result, 'log', '')}")
    return result


def call_limited(limit: Limit, label: str, what: str, run: Callable[..., Any], *args: Any) -> Any:
    """`run(*args)` under the limit, for the refit and the explanation: past it,
    MemoryLimitExceeded whose message names `what` (the driver makes it one line)."""
    result = run_limited(limit, label, run, *args)
    if isinstance(result, MemoryOut):
        raise MemoryLimitExceeded(result.reason.replace("the iteration", what, 1))
    return result
