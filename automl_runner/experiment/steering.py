"""Steering a running experiment: the requests on its parent run (stop, cancel iteration
n) over the control channel, its progress written back there, and the signals (Ctrl-C
once asks for a stop; twice, or SIGTERM, ends the driver at once; before the search
either ends it at once).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from ..engine.executor import Executor
from ..errors import Terminated
from ..tracking.control import DriverChannel
from ..tracking.schema import SEARCHING, STOP, STOPPING, cancel_tag
from .record import Record

log = logging.getLogger(__name__)

# the reason no new iteration starts after Ctrl-C
INTERRUPTED = "interrupted"


class Steering:
    """The driver's side of steering: reads requests and signals, writes progress."""

    def __init__(
        self,
        channel: DriverChannel,
        executor: Executor,
        record: Record,
        interrupts: Interrupts | None = None,
    ) -> None:
        self.channel, self.executor, self.record = channel, executor, record
        self.interrupts = interrupts or Interrupts()
        # why no new iteration starts: a stop request, or Ctrl-C (INTERRUPTED)
        self.stopping: str | None = None
        # epoch seconds each iteration (and ensemble) was launched, for the status
        self.launched_at: dict[int, float] = {}

    @property
    def interrupted(self) -> bool:
        return self.stopping == INTERRUPTED

    def poll(self, cancel: Callable[[int], str]) -> None:
        """Ctrl-C and the requests on the parent run (read at most once a poll period);
        `cancel(n)` acts on a request to cancel iteration n and returns the answer."""
        self.interrupts.check()
        if self.interrupts.requested and not self.interrupted:
            self.stopping = INTERRUPTED
            log.warning(
                "Ctrl-C: no new iterations; cancelling %d running, then refitting the best "
                "so far (Ctrl-C again to exit at once)",
                self.executor.in_flight,
            )
        if self.channel.server_lost and not self.stopping:
            self.stopping = "tracking server lost"
            log.warning(
                "the tracking server has not answered for tracking.outage_minutes: no new "
                "iterations; cancelling %d running, then refitting the best so far into "
                "the journal",
                self.executor.in_flight,
            )
        requests = self.channel.requests()
        if requests.stop:
            if not self.stopping:
                self.stopping = "stop requested"
                log.warning(
                    "stop requested: no new iterations; cancelling %d running, then "
                    "refitting the best so far",
                    self.executor.in_flight,
                )
            self.channel.answer(STOP, "stopping")
        for n in requests.cancel:
            self.channel.answer(cancel_tag(n), cancel(n))

    def progress(self, state: str | None = None) -> None:
        """What runs, the counts and the best so far, on the parent run (when they change)."""
        running = self.executor.running()
        best = self.record.best
        self.channel.progress(
            state or (STOPPING if self.stopping else SEARCHING),
            {n: (c.description, self.launched_at.get(n, 0.0)) for n, c in running.items()},
            self.record.counts(),
            len(self.record.results),
            None if best is None else (best.iteration, best.candidate.description),
        )

    def launched(self, iteration: int) -> None:
        self.launched_at[iteration] = time.time()

    @contextmanager
    def safe(self) -> Iterator[None]:
        """A stretch (waiting on Ray) where Ctrl-C twice may end the driver at once."""
        with self.interrupts.safe():
            yield


class Interrupts:
    """Ctrl-C and SIGTERM, for the whole experiment.

    Before the search (loading the data, connecting the compute) both end the driver at
    once: KeyboardInterrupt, or Terminated for SIGTERM. From the search on (``graceful``)
    Ctrl-C once asks for a stop (``requested``); twice, or SIGTERM, ends the driver at
    once, the run marked KILLED with its finished iterations kept.

    Installed only on the main thread and only over default handlers, so a host that
    handles signals itself (a notebook kernel with its own) keeps them, and an ignored
    SIGINT (a background job of a shell) stays ignored.
    """

    def __init__(self) -> None:
        self.requested = False
        # an exit asked for while the driver was writing to MLflow: raised at check()
        self.exit_now: type[KeyboardInterrupt] | None = None
        # from the search on: Ctrl-C once is a stop request, exits wait for a safe stretch
        self.graceful = False
        # SIGTERM arrived: Ray re-raises a KeyboardInterrupt from inside its waits as a
        # plain one, so the kind of the exit is kept here too
        self.terminated = False
        self._saved: dict[int, Any] = {}
        self._safe = 0

    def _exit(self, kind: type[KeyboardInterrupt]) -> None:
        # raising inside an MLflow write could leave the SQLite store locked for the
        # writes that end the run; there the exit waits for the next check()
        if self._safe or not self.graceful:
            raise kind
        self.exit_now = kind

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested or not self.graceful:
            self._exit(KeyboardInterrupt)
        self.requested = True

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True
        self._exit(Terminated)

    def by_sigterm(self, ex: BaseException) -> bool:
        """Whether the KeyboardInterrupt `ex` ends the driver for a SIGTERM."""
        return self.terminated or isinstance(ex, Terminated)

    @contextmanager
    def safe(self) -> Iterator[None]:
        """A stretch (waiting on Ray) where an exit may be raised at once."""
        self.check()
        self._safe += 1
        try:
            yield
        finally:
            self._safe -= 1

    def check(self) -> None:
        """Raise KeyboardInterrupt (Terminated) for an exit asked for outside a safe stretch."""
        kind, self.exit_now = self.exit_now, None
        if kind is not None:
            raise kind

    @contextmanager
    def searching(self) -> Iterator[Interrupts]:
        """The search and what follows it: Ctrl-C once asks for a stop."""
        self.graceful = True
        try:
            yield self
        finally:
            self.graceful = False

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._saved[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)
            # None: a handler not set from Python. Ray's own (ray.init sets one that
            # exits with code 15, skipping the run's KILLED; engine.compute puts back the
            # handler ray.init found) is no host's: replaced too
            if _default_sigterm(signal.getsignal(signal.SIGTERM)):
                self._saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield self
        finally:
            for signum, handler in self._saved.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)
            self._saved.clear()


def _default_sigterm(handler: Any) -> bool:
    """Whether the SIGTERM handler is one the driver may replace: the default, one not
    set from Python, or the one an earlier ray.init() left."""
    if handler in (signal.SIG_DFL, None):
        return True
    return str(getattr(handler, "__module__", "")).startswith("ray.")
