"""What the experiment loop needs of whatever runs its iterations: the Executor protocol.

``submit`` starts an iteration, ``next_done`` waits until one finishes or passes its
timeout (then it is killed and returned as TIMEOUT), ``cancel`` kills one iteration (a
user's request) and ``cancel_all`` kills what is left; ensembles, the refit and the
explanation run the same way. ``explain`` only starts the explanation: the driver logs
and evaluates the model while the workers explain it, then asks for the result. Two
executors stand behind it: ``RayExecutor`` (every compute mode) and ``SerialExecutor``
(in this process: unit tests and debugging).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Protocol

from ..records import Candidate, IterationResult
from ..worker.blending import Selection


class Executor(Protocol):
    @property
    def in_flight(self) -> int:
        """Iterations (or ensembles) submitted and not yet returned."""
        ...

    def running(self) -> dict[int, Candidate]:
        """Iteration number -> candidate of what is in flight."""
        ...

    def submit(self, iteration: int, candidate: Candidate) -> None: ...

    def submit_ensemble(
        self,
        iteration: int,
        kind: str,
        members: list[IterationResult],
        metric: str,
        selection: Selection,
    ) -> None: ...

    def next_done(self, deadline: float | None = None) -> IterationResult | None:
        """The next finished or timed-out iteration; None if `deadline` (monotonic) passes
        first or nothing is in flight."""
        ...

    def cancel(self, iteration: int, reason: str) -> IterationResult | None:
        """Kill one iteration in flight (CANCELLED); None if it is not in flight or has
        finished already (its real result then comes from ``next_done``)."""
        ...

    def cancel_all(self, reason: str) -> list[IterationResult]: ...

    def refit(self, candidate: Candidate) -> Any:
        """The candidate's model fitted on all training rows."""
        ...

    def explain(self, model: Any, settings: dict[str, Any], timeout_s: float) -> Explaining:
        """Start explaining `model`; `timeout_s` counts from now."""
        ...


class Explaining(Protocol):
    """An explanation started by ``Executor.explain``."""

    def result(self) -> tuple[Any, Any]:
        """(Explanation, the rows it explains), once it is done; TimeoutError past its
        timeout (the task is then killed), ComputeError past the memory limit."""
        ...

    def cancel(self) -> None:
        """Stop it if it still runs (Ctrl-C, a failure of what ran beside it)."""
        ...


def process_name() -> str:
    """host/pid of this process: where an iteration ran when Ray did not run it."""
    return f"{socket.gethostname()}/pid-{os.getpid()}"
