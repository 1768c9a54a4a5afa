"""A memory limit that holds inside one worker process: the iteration (or refit, or
explanation) that grows past it is stopped there, before the node runs short and Ray's
memory monitor kills whatever it picks (another iteration, the driver).

A watchdog thread reads the process's private resident memory (what it alone holds: the
object store's shared copy of the data is the node's, not the iteration's) every
``interval`` seconds. Past the limit it

1. calls ``on_trip`` (the engine notes the MEMOUT where a rerun of the task will see it),
2. lowers RLIMIT_DATA to what the process has now, so the next large allocation fails
   with MemoryError even inside C code (numpy raises it cleanly),
3. raises MemoryLimitExceeded in the guarded thread, and again each ``reraise`` seconds
   while the process stays over the limit (code that caught the first one),

and once usage is back under the limit puts RLIMIT_DATA back. A process still over the
limit ``grace`` seconds later (an allocation loop that swallows exceptions) kills itself
with SIGKILL: ``on_trip`` has already said why, so the rerun Ray makes of the task
records MEMOUT at once instead of running it again.

Linux only (it reads /proc/self/statm); elsewhere the guard watches nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

# the share of a node's memory its iterations may use together (the rest: the object
# store, Ray's own processes, the system)
NODE_MEMORY_SHARE = 0.8
_STATM = Path("/proc/self/statm")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class MemoryLimitExceeded(MemoryError):
    """Raised in the guarded thread when its process passes the memory limit."""


def private_bytes() -> int | None:
    """Resident memory of this process that no other process shares; None off Linux."""
    try:
        fields = _STATM.read_text().split()
    except OSError:
        return None
    resident, shared = int(fields[1]), int(fields[2])
    return (resident - shared) * _PAGE


def machine_memory_bytes() -> int:
    """This machine's memory, or its cgroup's limit where that is lower (a container)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


def default_limit_bytes(node_cpus: float, cpus_per_iteration: float) -> int:
    """The limit when compute.memory_mb_per_iteration is null: the node's memory share
    divided among as many iterations as its CPUs run at once."""
    at_once = max(1.0, node_cpus / max(cpus_per_iteration, 1e-9))
    return int(NODE_MEMORY_SHARE * machine_memory_bytes() / at_once)


def megabytes(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


class MemoryGuard:
    """Context manager: the memory limit of the code inside, in the thread entering it."""

    def __init__(
        self,
        limit_bytes: int,
        on_trip: Callable[[str], None] | None = None,
        interval: float = 0.1,
        grace: float = 3.0,
        reraise: float = 1.0,
    ) -> None:
        self.limit_bytes, self.on_trip = limit_bytes, on_trip
        self.interval, self.grace, self.reraise = interval, grace, reraise
        # set once the limit was passed: the bytes used then, and the most seen
        self.tripped_at: int | None = None
        self.peak_bytes = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._target = 0
        self._thread: threading.Thread | None = None
        self._saved_limit: tuple[int, int] | None = None

    @property
    def tripped(self) -> bool:
        return self.tripped_at is not None

    def reason(self, what: str = "the iteration") -> str:
        """One line: how much `what` used, against which limit."""
        return (
            f"{what} used {megabytes(self.peak_bytes)}, past its memory limit of "
            f"{megabytes(self.limit_bytes)} (compute.memory_mb_per_iteration): stopped"
        )

    def __enter__(self) -> MemoryGuard:
        if private_bytes() is None:
            return self
        self._target = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="automl-memory-guard", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._done.set()
            # an exception raised but not yet delivered must not land after the guard
            if self._target:
                _raise_in(self._target, None)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._restore_limit()

    def _watch(self) -> None:
        over_since: float | None = None
        raised = 0.0
        while not self._done.wait(self.interval):
            used = private_bytes() or 0
            self.peak_bytes = max(self.peak_bytes, used)
            if used <= self.limit_bytes:
                if over_since is not None:
                    over_since = None
                    self._restore_limit()
                continue
            now = time.monotonic()
            if self.tripped_at is None:
                self.tripped_at = used
                if self.on_trip is not None:
                    # a note that cannot be written must not stop the guard itself
                    with contextlib.suppress(Exception):
                        self.on_trip(self.reason())
            if over_since is None:
                over_since = now
                self._lower_limit()
            elif now - over_since >= self.grace:
                os.kill(os.getpid(), signal.SIGKILL)
            if now - raised < self.reraise:
                continue  # the exception raised is still unwinding (and freeing) the stack
            raised = now
            with self._lock:
                if not self._done.is_set():
                    _raise_in(self._target, MemoryLimitExceeded)

    def _lower_limit(self) -> None:
        """RLIMIT_DATA down to what the process has mapped now: its next allocation fails."""
        import resource

        with contextlib.suppress(OSError, ValueError):
            data = int(_STATM.read_text().split()[5]) * _PAGE
            current = resource.getrlimit(resource.RLIMIT_DATA)
            if self._saved_limit is None:
                self._saved_limit = current
            hard = current[1]
            soft = data if hard == resource.RLIM_INFINITY else min(data, hard)
            resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))

    def _restore_limit(self) -> None:
        import resource

        saved, self._saved_limit = self._saved_limit, None
        if saved is not None:
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(resource.RLIMIT_DATA, saved)


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` in the thread `thread_id` at its next Python instruction (None: cancel
    one pending)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )
