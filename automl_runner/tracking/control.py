"""The control channel of a running experiment: tags on its MLflow parent run.

Whoever reaches the tracking store (another process, another machine of the cluster)
steers the experiment by setting a tag on its parent run; the driver polls the run about
once a second, acts, and answers in the same tag::

    schema.STOP = requested          -> stopping
    schema.cancel_tag(n) = requested -> cancelled | ignored: <why>

The driver also keeps its progress on the parent run (state, what runs, counts, heartbeat),
so the status of an experiment needs nothing but MLflow.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .journal import ServerAway
from .schema import (
    BEST_ITERATION,
    BEST_PIPELINE,
    BUDGET_ITERATIONS,
    BUDGET_MINUTES,
    CANCEL,
    DRIVER,
    ELAPSED_BEFORE,
    HEARTBEAT,
    REQUESTED,
    RUNNING,
    SEARCHING,
    SESSION_STARTED,
    STATE,
    STOP,
    cancel_tag,
    count_metric,
    is_request,
)

log = logging.getLogger(__name__)

# how often the driver reads the requests on its parent run, at most
POLL_SECONDS = 1.0
# how often the driver's heartbeat tag is written, at the least
HEARTBEAT_SECONDS = 10.0
# what runs and the counts alone are written at most this often (a state or a best that
# changes is written at once): a write per finished iteration was ~9 ms of the driver's
# time per iteration, on the critical path of every configuration
PROGRESS_SECONDS = 0.5


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


def session_elapsed(tags: dict[str, str], until: float | None = None) -> float:
    """Seconds the run's drivers have spent: what earlier drivers spent, plus the latest
    driver's session up to `until` (now, for a live driver) or, without it, up to its
    last heartbeat (a driver that died: its time ends where it was last heard of)."""
    before = float(tags.get(ELAPSED_BEFORE) or 0.0)
    started = tags.get(SESSION_STARTED)
    end = until if until is not None else tags.get(HEARTBEAT)
    if not started or end is None:
        return before
    return before + max(0.0, float(end) - float(started))


# --- the requesting side -----------------------------------------------------------------
def request_stop(client: Any, run_id: str) -> None:
    client.set_tag(run_id, STOP, REQUESTED)


def request_cancel(client: Any, run_id: str, iteration: int) -> None:
    client.set_tag(run_id, cancel_tag(iteration), REQUESTED)


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

    def __init__(self, client: Any, run_id: str, poll_seconds: float = POLL_SECONDS) -> None:
        self.client, self.run_id = client, run_id
        self.poll_seconds = poll_seconds
        self._polled = -float("inf")
        self._written: tuple[Any, ...] | None = None
        self._written_at = 0.0
        self._stop_beating = threading.Event()
        self._beating: threading.Thread | None = None

    def start(
        self, iterations: int | None, timeout_minutes: float | None, elapsed_before: float
    ) -> None:
        from mlflow.entities import RunTag

        now = time.time()
        tags = {
            STATE: SEARCHING,
            DRIVER: driver_id(),
            HEARTBEAT: f"{now:.3f}",
            SESSION_STARTED: f"{now:.3f}",
            ELAPSED_BEFORE: f"{elapsed_before:.3f}",
            BUDGET_ITERATIONS: "" if iterations is None else str(iterations),
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

    @property
    def server_lost(self) -> bool:
        """The tracking server has been away longer than ``tracking.outage_minutes``."""
        return bool(getattr(self.client, "expired", False))

    def requests(self, force: bool = False) -> Requests:
        """New requests since the last call; reads MLflow at most once per poll_seconds."""
        now = time.monotonic()
        if not force and now - self._polled < self.poll_seconds:
            return Requests()
        self._polled = now
        try:
            tags = self.client.get_run(self.run_id).data.tags
        except ServerAway:
            # requests wait for the server; the experiment goes on meanwhile
            return Requests()
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
        last = self._written
        if (
            last is not None
            and (last[0], last[3]) == (state, best)
            and now - self._written_at < PROGRESS_SECONDS
        ):
            return  # written on a later call (the loop polls every second)
        shown = [[n, desc, round(t, 3)] for n, (desc, t) in sorted(running.items())]
        tags = [
            RunTag(STATE, state),
            RunTag(RUNNING, json.dumps(shown)),
            RunTag(HEARTBEAT, f"{now:.3f}"),
        ]
        if best is not None:
            tags += [
                RunTag(BEST_ITERATION, str(best[0])),
                RunTag(BEST_PIPELINE, best[1]),
            ]
        ms = int(now * 1000)
        metrics = [Metric(count_metric(k), float(v), ms, step) for k, v in counts.items()]
        metrics.append(Metric(count_metric("running"), float(len(running)), ms, step))
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
        self._written, self._written_at = current, now

    def close(self, state: str) -> None:
        """Final state; requests nobody acted on are answered so no one waits for them."""
        from mlflow.entities import RunTag

        self._stop_beating.set()
        if self._beating is not None:
            self._beating.join(timeout=5)
        tags = [RunTag(STATE, state), RunTag(RUNNING, "[]")]
        try:
            asked = self.client.get_run(self.run_id).data.tags
        except ServerAway:
            asked = {}
        for key, value in asked.items():
            if value == REQUESTED and is_request(key):
                tags.append(RunTag(key, "ignored: the experiment ended first"))
        self.client.log_batch(self.run_id, tags=tags)
