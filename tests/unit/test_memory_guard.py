"""The memory guard in this process: allocation past the limit is stopped with a
MemoryError within a fraction of a second, and the process's limits are as they
were afterwards. (Through Ray, with MEMOUT records: tests/system/test_memout.py.)"""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest

from automl_runner.worker.memory_guard import (
    NODE_MEMORY_SHARE,
    MemoryGuard,
    default_limit_bytes,
    machine_memory_bytes,
    private_bytes,
)

pytestmark = pytest.mark.skipif(private_bytes() is None, reason="reads /proc (Linux only)")
MB = 2**20


def _allocate(limit_mb: int, held: list, step_mb: int = 50) -> None:
    for _ in range(limit_mb // step_mb):
        held.append(np.ones(step_mb * MB, dtype=np.uint8))
        time.sleep(0.01)


def test_allocating_past_the_limit_is_stopped_soon_after():
    before = resource.getrlimit(resource.RLIMIT_DATA)
    base = private_bytes()
    limit = base + 300 * MB
    held: list = []
    notes: list[str] = []
    guard = MemoryGuard(limit, on_trip=notes.append)
    started = time.monotonic()
    with pytest.raises(MemoryError), guard:
        _allocate(3000, held)
    stopped = time.monotonic() - started
    reached = len(held) * 50
    held.clear()
    # one note, when the limit was passed; the allocation goes on for a step or two
    # after it (the guard's own reason then gives the peak), never past the limit less
    assert guard.tripped and len(notes) == 1
    assert limit // MB <= _used(notes[0]) <= _used(guard.reason()) == round(guard.peak_bytes / MB)
    # stopped within a few steps past 300 MB (of the 3 GB it would have taken)
    assert 250 <= reached <= 800, reached
    assert stopped < 5
    assert "past its memory limit" in guard.reason()
    assert resource.getrlimit(resource.RLIMIT_DATA) == before


def _used(reason: str) -> int:
    """The MB a reason line says were used."""
    return int(reason.split(" used ")[1].split(" MB")[0].replace(",", ""))


def test_under_the_limit_nothing_happens():
    held: list = []
    guard = MemoryGuard(private_bytes() + 500 * MB)
    with guard:
        _allocate(100, held)
    assert not guard.tripped and len(held) == 2


def test_the_default_limit_shares_the_node_among_its_iterations():
    total = machine_memory_bytes()
    assert default_limit_bytes(4, 1) == int(NODE_MEMORY_SHARE * total / 4)
    assert default_limit_bytes(4, 2) == int(NODE_MEMORY_SHARE * total / 2)
    # an iteration wider than its node still gets the node's share
    assert default_limit_bytes(1, 2) == int(NODE_MEMORY_SHARE * total)
