"""Iterations run one at a time in this process, when they are collected: the executor
behind the fast unit tests of the loop, and for debugging (a breakpoint in a worker).

There is no process to kill: an iteration that ran past its timeout is recorded TIMEOUT
once it returns, and cancelling only reaches iterations not yet run.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..records import CANCELLED, TIMEOUT, Candidate, IterationResult, PreparedData, ended
from ..worker.blending import Selection
from ..worker.ensemble import ensemble_candidate, run_ensemble
from ..worker.explain_task import explain_best
from ..worker.iteration import refit, run_iteration
from .executor import process_name


class SerialExecutor:
    """Runs each iteration in this process when ``next_done`` collects it, in the order
    submitted (a subclass may pick another order with ``_pick``)."""

    def __init__(self, data: PreparedData, *, timeout_s: float = float("inf")) -> None:
        self.data = data
        self.timeout_s = timeout_s
        # (iteration, candidate, what runs it)
        self._queue: list[tuple[int, Candidate, Callable[[], IterationResult]]] = []

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def running(self) -> dict[int, Candidate]:
        return {i: c for i, c, _ in self._queue}

    def submit(self, iteration: int, candidate: Candidate) -> None:
        self._queue.append(
            (iteration, candidate, lambda: run_iteration(iteration, candidate, self.data))
        )

    def submit_ensemble(
        self,
        iteration: int,
        kind: str,
        members: list[IterationResult],
        metric: str,
        selection: Selection,
    ) -> None:
        placeholder = ensemble_candidate(kind, members)
        self._queue.append(
            (
                iteration,
                placeholder,
                lambda: run_ensemble(kind, members, self.data, metric, selection, iteration),
            )
        )

    def next_done(self, deadline: float | None = None) -> IterationResult | None:
        if not self._queue:
            return None
        iteration, candidate, run = self._queue.pop(self._pick())
        start = time.monotonic()
        result = run()
        result.node = process_name()
        seconds = time.monotonic() - start
        if seconds >= self.timeout_s:
            why = f"iteration ran past {self.timeout_s:.0f} s"
            return ended(iteration, candidate, TIMEOUT, why, seconds)
        return result

    def _pick(self) -> int:
        """Which queued iteration runs next: the first submitted."""
        return 0

    def cancel(self, iteration: int, reason: str) -> IterationResult | None:
        for queued in self._queue:
            if queued[0] == iteration:
                self._queue.remove(queued)
                return ended(iteration, queued[1], CANCELLED, reason)
        return None

    def cancel_all(self, reason: str) -> list[IterationResult]:
        out = [ended(i, c, CANCELLED, reason) for i, c, _ in self._queue]
        self._queue.clear()
        return out

    def refit(self, candidate: Candidate) -> Any:
        return refit(candidate, self.data)

    def explain(self, model: Any, settings: dict[str, Any], timeout_s: float) -> _Deferred:
        # in this process nothing runs beside the driver: explained when asked for
        return _Deferred(functools.partial(explain_best, model, self.data, settings))


@dataclass
class _Deferred:
    """An explanation made in this process when its result is asked for."""

    make: Callable[[], tuple[Any, Any]]

    def result(self) -> tuple[Any, Any]:
        return self.make()

    def cancel(self) -> None:
        pass
