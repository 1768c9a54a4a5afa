"""Iterations as Ray tasks (the Executor of every compute mode), reading one shared
object-store copy of the data.
"""

from __future__ import annotations

import functools
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..records import (
    CANCELLED,
    FAILED,
    MEMOUT,
    TIMEOUT,
    Candidate,
    IterationResult,
    PreparedData,
    ended,
)
from ..worker.blending import Selection
from ..worker.ensemble import build_ensemble, ensemble_candidate, run_ensemble
from ..worker.explain_task import explain_best
from ..worker.iteration import refit, run_iteration
from ..worker.memory_guard import MemoryLimitExceeded
from .memory_limit import Limit, MemoryOut, call_limited, forget, noted, run_limited
from .nodes import short_id
from .task_errors import ended_by_ray


def ray_map(
    fn: Callable[..., Any],
    calls: list[dict[str, Any]],
    num_cpus: float,
    limit: Limit,
    label: str,
) -> list[Any]:
    """`fn(**kwargs)` for each call as parallel Ray tasks under the memory limit, results
    in call order: an ensemble's members explained side by side from inside the
    explanation's own task (which gives its CPU back while it waits for them)."""
    import ray

    task = ray.remote(call_limited).options(num_cpus=num_cpus, max_retries=0)
    refs = [
        task.remote(limit, f"{label} member {i}", "the explanation", functools.partial(fn, **kw))
        for i, kw in enumerate(calls)
    ]
    return list(ray.get(refs))


def node_name() -> str:
    """host/Ray node id of the worker running this (several nodes may share a host)."""
    import ray

    return f"{socket.gethostname()}/{short_id(ray.get_runtime_context().get_node_id())}"


def _stamped(
    limit: Limit, label: str, run: Callable[..., IterationResult], *args: Any
) -> IterationResult | MemoryOut:
    """`run(*args)` inside a Ray task (an iteration, an ensemble) under the memory limit,
    its result (or MemoryOut) stamped with the node that ran it."""
    result = run_limited(limit, label, run, *args)
    result.node = node_name()
    return result  # type: ignore[no-any-return]


@dataclass
class _InFlight:
    iteration: int
    candidate: Candidate
    started: float
    # how often Ray reruns it when its worker, its node or the memory monitor kills it
    max_retries: int = 0

    @property
    def label(self) -> str:
        """Its name in Ray (and in the memory limit's notes)."""
        return f"iteration {self.iteration}"


@dataclass
class _Explaining:
    """The explanation task started by RayExecutor.explain."""

    ray: Any
    ref: Any
    # ray.get of the task, its memory limit's note as the error (RayExecutor._get_limited)
    get: Callable[[], tuple[Any, Any]]
    deadline: float  # monotonic
    timeout_s: float

    def result(self) -> tuple[Any, Any]:
        ready, _ = self.ray.wait([self.ref], timeout=max(0.0, self.deadline - time.monotonic()))
        if not ready:
            self.cancel()
            raise TimeoutError(
                f"explanation ran past explain.timeout_minutes ({self.timeout_s / 60:g} min)"
            )
        return self.get()

    def cancel(self) -> None:
        if not self.ray.wait([self.ref], timeout=0)[0]:
            # recursive (Ray's default): its members' tasks with it
            self.ray.cancel(self.ref, force=True)


class RayExecutor:
    """Iterations as Ray tasks reading one shared object-store copy of the data; an
    Executor (``engine.executor``)."""

    def __init__(
        self,
        data: PreparedData,
        *,
        timeout_s: float,
        num_cpus: float = 1.0,
        memory_mb: int | None = None,
        max_retries: int = 0,
    ) -> None:
        import ray

        self._ray = ray
        # the data goes into the object store once; each task gets the reference
        self.data_ref = ray.put(data)
        # Ray reruns a task whose worker or node died (never one that raised: that is
        # a FAILED iteration), on whatever node survives; one its memory monitor killed
        # as often, as engine.compute bounds Ray's OOM retries by the same number
        self._max_retries = max_retries
        options: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": max_retries}
        if memory_mb:
            options["memory"] = memory_mb * 1024 * 1024
        # every task runs under compute.memory_mb_per_iteration (engine.memory_limit)
        self._limit = Limit.for_run(memory_mb, num_cpus)
        self._task, self._task_options = ray.remote(_stamped), options
        self._call = ray.remote(call_limited).options(num_cpus=num_cpus, max_retries=0)
        self._num_cpus = num_cpus
        self._ensemble = ray.remote(_stamped).options(num_cpus=num_cpus, max_retries=0)
        # (the member list, its object-store copy): both ensembles read one copy
        self._members: tuple[list[IterationResult], Any] | None = None
        self.timeout_s = timeout_s
        self._running: dict[Any, _InFlight] = {}

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def running(self) -> dict[int, Candidate]:
        """Iteration number -> candidate of what is in flight."""
        return {f.iteration: f.candidate for f in self._running.values()}

    def shared_data(self) -> PreparedData:
        """The data as stored in the object store; numeric arrays are read-only views of it."""
        data: PreparedData = self._ray.get(self.data_ref)
        return data

    def submit(self, iteration: int, candidate: Candidate) -> None:
        # named, so Ray's own reports (the memory monitor's, `ray list tasks`, the
        # dashboard) say which iteration a task is
        flight = _InFlight(iteration, candidate, time.monotonic(), self._max_retries)
        task = self._task.options(name=flight.label, **self._task_options)
        ref = task.remote(
            self._limit, flight.label, run_iteration, iteration, candidate, self.data_ref
        )
        self._running[ref] = flight

    def submit_ensemble(
        self,
        iteration: int,
        kind: str,
        members: list[IterationResult],
        metric: str,
        selection: Selection,
    ) -> None:
        """Build one ensemble in a task, like an iteration (timeout, cancel, failure)."""
        if self._members is None or self._members[0] is not members:
            self._members = (members, self._ray.put(members))
        flight = _InFlight(iteration, ensemble_candidate(kind, members), time.monotonic())
        ref = self._ensemble.remote(
            self._limit,
            flight.label,
            run_ensemble,
            kind,
            self._members[1],
            self.data_ref,
            metric,
            selection,
            iteration,
        )
        self._running[ref] = flight

    def next_done(self, deadline: float | None = None) -> IterationResult | None:
        """The next finished or timed-out iteration; None if `deadline` (monotonic) passes."""
        ray = self._ray
        while self._running:
            now = time.monotonic()
            expiry = min(f.started for f in self._running.values()) + self.timeout_s
            wait_until = expiry if deadline is None else min(expiry, deadline)
            ready, _ = ray.wait(
                list(self._running), num_returns=1, timeout=max(0.0, wait_until - now)
            )
            if ready:
                return self._collect(ready[0])
            now = time.monotonic()
            for ref, f in list(self._running.items()):
                if now - f.started >= self.timeout_s:
                    return self._kill(ref, TIMEOUT, f"iteration ran past {self.timeout_s:.0f} s")
            if deadline is not None and now >= deadline:
                return None
        return None

    def cancel(self, iteration: int, reason: str) -> IterationResult | None:
        """Kill one running iteration (CANCELLED); None if it is not running.

        One that has already finished is left for ``next_done`` to collect: its result is
        real, and a cancel arriving after it would only hide it.
        """
        for ref, f in list(self._running.items()):
            if f.iteration == iteration:
                ready, _ = self._ray.wait([ref], timeout=0)
                return None if ready else self._kill(ref, CANCELLED, reason)
        return None

    def cancel_all(self, reason: str) -> list[IterationResult]:
        return [self._kill(ref, CANCELLED, reason) for ref in list(self._running)]

    def refit(self, candidate: Candidate) -> Any:
        """The candidate refit on all rows in a task (an ensemble: its members in
        parallel, then assembled); ComputeError past the memory limit."""
        members = candidate.members or (candidate,)
        labels = [f"refit {uuid.uuid4().hex[:8]}" for _ in members]
        refs = [
            self._call.remote(self._limit, label, "the refit", refit, m, self.data_ref)
            for label, m in zip(labels, members, strict=True)
        ]
        models = [self._get_limited(ref, label) for ref, label in zip(refs, labels, strict=True)]
        if candidate.members:
            return build_ensemble(candidate, models, self.shared_data())
        return models[0]

    def explain(self, model: Any, settings: dict[str, Any], timeout_s: float) -> _Explaining:
        """Start explaining the best model in a task (an ensemble's members in tasks of
        their own, under the same limit); see engine.executor.Explaining."""
        label = f"explanation {uuid.uuid4().hex[:8]}"
        mapper = functools.partial(ray_map, num_cpus=self._num_cpus, limit=self._limit, label=label)
        ref = self._call.remote(
            self._limit,
            label,
            "the explanation",
            explain_best,
            model,
            self.data_ref,
            settings,
            mapper,
        )
        return _Explaining(
            self._ray,
            ref,
            functools.partial(self._get_limited, ref, label),
            time.monotonic() + timeout_s,
            timeout_s,
        )

    def _get_limited(self, ref: Any, label: str) -> Any:
        """ray.get of a refit or explanation task; its memory limit passed: one line."""
        from ray.exceptions import RayTaskError

        from ..errors import ComputeError

        try:
            return self._ray.get(ref)
        except RayTaskError as ex:
            if isinstance(ex.cause, MemoryLimitExceeded):
                raise ComputeError(str(ex.cause)) from None
            raise
        except Exception as ex:  # its process killed itself past the limit, or Ray did
            why = noted(self._limit, label)
            if why:
                raise ComputeError(why) from ex
            raise
        finally:
            forget(self._limit, label)

    def _collect(self, ref: Any) -> IterationResult:
        f = self._running.pop(ref)
        try:
            result: IterationResult | MemoryOut = self._ray.get(ref)
        except Exception as ex:  # Ray ended it (memory, node lost): the experiment goes on
            memout = noted(self._limit, f.label)
            if memout:  # its process ended itself past the limit, and Ray did not rerun it
                forget(self._limit, f.label)
                return self._memout(f, MemoryOut(memout, f"{memout}\n\n{type(ex).__name__}: {ex}"))
            why = ended_by_ray(ex, f.max_retries)
            return IterationResult(
                f.iteration,
                f.candidate,
                FAILED,
                duration=time.monotonic() - f.started,
                error=why,
                log=f"{why}\n\n{type(ex).__name__}: {ex}",
            )
        if isinstance(result, MemoryOut):
            forget(self._limit, f.label)
            return self._memout(f, result)
        return result

    def _memout(self, f: _InFlight, out: MemoryOut) -> IterationResult:
        result = ended(f.iteration, f.candidate, MEMOUT, out.reason, time.monotonic() - f.started)
        result.log, result.node = out.log or out.reason, out.node
        return result

    def _kill(self, ref: Any, status: str, reason: str) -> IterationResult:
        f = self._running.pop(ref)
        # only force=True stops a running task; it kills the worker process
        self._ray.cancel(ref, force=True)
        return ended(f.iteration, f.candidate, status, reason, time.monotonic() - f.started)
