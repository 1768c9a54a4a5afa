"""The control channel of a running experiment: tags on its MLflow parent run.

Whoever reaches the tracking store (another process, another machine of the cluster)
steers the experiment by setting a tag on its parent run; the driver polls the run about
once a second, acts, and answers in the same tag::

    automl.control.stop = requested          -> stopping
    automl.control.cancel.<n> = requested    -> cancelled | ignored: <why>

The driver also keeps its progress on the parent run (state, what runs, counts, heartbeat),
so the status of an experiment needs nothing but MLflow. Ctrl-C is a control too: the
first asks for a stop, the second (or SIGTERM) ends the driver at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

# tags the driver keeps on its parent run
STATE = "automl.state"  # SUBMITTED, RUNNING, STOPPING, ENSEMBLING, REFITTING, end status
RUNNING = "automl.running"  # JSON [[iteration, pipeline, started (epoch s)], ...]
DRIVER = "automl.driver"  # host:pid of the driver writing this run
HEARTBEAT = "automl.heartbeat"  # epoch seconds of the driver's latest write
SESSION_STARTED = "automl.session_started"  # epoch seconds this driver started
ELAPSED_BEFORE = "automl.elapsed_before"  # seconds spent by earlier drivers (resumed runs)
BUDGET_ITERATIONS = "automl.budget.iterations"  # automl.iterations of the running driver
BUDGET_MINUTES = "automl.budget.minutes"  # automl.experiment_timeout_minutes ("" = none)
JOB_ID = "automl.job_id"  # the Ray job running the driver (submitted experiments)
JOB_ADDRESS = "automl.job_address"  # the Ray Jobs API it was submitted to
# requests, set by anyone, answered by the driver
STOP = "automl.control.stop"
CANCEL = "automl.control.cancel."
REQUESTED = "requested"

POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 10.0
COUNTS = ("completed", "failed", "timed_out", "cancelled")


def driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def driver_alive(tags: dict[str, str], now: float | None = None) -> str | None:
    """Why the driver of a RUNNING run looks alive (None if it is gone).

    On this host the process id answers; elsewhere, a heartbeat younger than three
    heartbeat periods does.
    """
    driver = tags.get(DRIVER)
    if not driver:
        return None
    host, _, pid = driver.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"its driver {driver} is alive"
    beat = float(tags.get(HEARTBEAT) or 0)
    age = (now or time.time()) - beat
    if age < 3 * HEARTBEAT_SECONDS:
        return f"its driver {driver} wrote {age:.0f} s ago"
    return None


# --- the requesting side -----------------------------------------------------------------
def request_stop(client: Any, run_id: str) -> None:
    client.set_tag(run_id, STOP, REQUESTED)


def request_cancel(client: Any, run_id: str, iteration: int) -> None:
    client.set_tag(run_id, f"{CANCEL}{iteration}", REQUESTED)


def await_answer(client: Any, run_id: str, key: str, timeout: float) -> str:
    """The driver's answer to the request in tag `key`, or "requested" after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)
        value = str(run.data.tags.get(key, REQUESTED))
        if value != REQUESTED or run.info.status != "RUNNING":
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(0.3)


# --- the driver's side -------------------------------------------------------------------
@dataclass
class Requests:
    stop: bool = False
    cancel: list[int] = field(default_factory=list)


class DriverChannel:
    """The driver's end: reads requests, answers them, and writes progress."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._polled = 0.0
        self._written: tuple[Any, ...] | None = None
        self._stop_beating = threading.Event()
        self._beating: threading.Thread | None = None

    def start(self, iterations: int, timeout_minutes: float | None, elapsed_before: float) -> None:
        from mlflow.entities import RunTag

        now = time.time()
        tags = {
            STATE: "RUNNING",
            DRIVER: driver_id(),
            HEARTBEAT: f"{now:.3f}",
            SESSION_STARTED: f"{now:.3f}",
            ELAPSED_BEFORE: f"{elapsed_before:.3f}",
            BUDGET_ITERATIONS: str(iterations),
            BUDGET_MINUTES: "" if timeout_minutes is None else f"{timeout_minutes:g}",
            RUNNING: "[]",
        }
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        # a thread, so the heartbeat goes on through a long refit or explanation
        self._beating = threading.Thread(target=self._beat, name="automl-heartbeat", daemon=True)
        self._beating.start()

    def _beat(self) -> None:
        while not self._stop_beating.wait(HEARTBEAT_SECONDS):
            try:
                self.client.set_tag(self.run_id, HEARTBEAT, f"{time.time():.3f}")
            except Exception as ex:  # a missed beat is no reason to stop the experiment
                log.debug("heartbeat not written: %s", ex)

    def requests(self, force: bool = False) -> Requests:
        """New requests since the last call; reads MLflow at most once per POLL_SECONDS."""
        now = time.monotonic()
        if not force and now - self._polled < POLL_SECONDS:
            return Requests()
        self._polled = now
        tags = self.client.get_run(self.run_id).data.tags
        out = Requests()
        for key, value in tags.items():
            if value != REQUESTED:
                continue
            if key == STOP:
                out.stop = True
            elif key.startswith(CANCEL) and key[len(CANCEL) :].isdigit():
                out.cancel.append(int(key[len(CANCEL) :]))
        out.cancel.sort()
        return out

    def answer(self, key: str, outcome: str) -> None:
        # written before the next poll, so a request is acted on once (and again only if
        # someone asks again)
        self.client.set_tag(self.run_id, key, outcome)

    def progress(
        self,
        state: str,
        running: dict[int, tuple[str, float]],
        counts: dict[str, int],
        step: int,
        best: tuple[int, str] | None,
    ) -> None:
        """Write state, what runs, the counts and the best so far when they change;
        `running` maps iteration -> (pipeline, start in epoch seconds)."""
        from mlflow.entities import Metric, RunTag

        current = (state, sorted(running), tuple(sorted(counts.items())), best)
        if current == self._written:
            return
        now = time.time()
        shown = [[n, desc, round(t, 3)] for n, (desc, t) in sorted(running.items())]
        tags = [
            RunTag(STATE, state),
            RunTag(RUNNING, json.dumps(shown)),
            RunTag(HEARTBEAT, f"{now:.3f}"),
        ]
        if best is not None:
            tags += [
                RunTag("automl.best_iteration", str(best[0])),
                RunTag("automl.best_pipeline", best[1]),
            ]
        ms = int(now * 1000)
        metrics = [Metric(f"iterations_{k}", float(v), ms, step) for k, v in counts.items()]
        metrics.append(Metric("iterations_running", float(len(running)), ms, step))
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
        self._written = current

    def close(self, state: str) -> None:
        """Final state; requests nobody acted on are answered so no one waits for them."""
        from mlflow.entities import RunTag

        self._stop_beating.set()
        if self._beating is not None:
            self._beating.join(timeout=5)
        tags = [RunTag(STATE, state), RunTag(RUNNING, "[]")]
        for key, value in self.client.get_run(self.run_id).data.tags.items():
            if value == REQUESTED and (key == STOP or key.startswith(CANCEL)):
                tags.append(RunTag(key, "ignored: the experiment ended first"))
        self.client.log_batch(self.run_id, tags=tags)


class Interrupts:
    """Ctrl-C once asks for a stop (``requested``); twice, or SIGTERM, raises KeyboardInterrupt.

    Installed only on the main thread and only over default handlers, so a host that
    handles signals itself (a notebook kernel with its own) keeps them, and an ignored
    SIGINT (a background job of a shell) stays ignored.
    """

    def __init__(self) -> None:
        self.requested = False
        # an exit asked for while the driver was writing to MLflow: raised at check()
        self.exit_now = False
        self._saved: dict[int, Any] = {}
        self._safe = 0

    def _exit(self) -> None:
        # raising inside an MLflow write could leave the SQLite store locked for the
        # writes that end the run; there the exit waits for the next check()
        if self._safe:
            raise KeyboardInterrupt
        self.exit_now = True

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self._exit()
        self.requested = True

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._exit()

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
        """Raise KeyboardInterrupt for an exit asked for outside a safe stretch."""
        if self.exit_now:
            self.exit_now = False
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._saved[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)
            # None: a handler not set from Python, e.g. Ray's crash reporter, which would
            # end the driver without its finally blocks
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                self._saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield self
        finally:
            for signum, handler in self._saved.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)
            self._saved.clear()
