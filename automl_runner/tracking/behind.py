"""MLflow writes made behind the search loop: one thread takes them in the order they were
put, so the loop launches the next iteration while the last one's child run is written.

A write's failure is raised to the caller at its next ``put`` or ``flush``, as if it had
been made there. The queue is bounded: a store slower than the iterations (a remote
server) holds the loop back instead of letting unwritten runs pile up in memory, and a
driver killed outright (SIGKILL) loses at most that many; every way out of a run that
the driver sees (its end, Ctrl-C, SIGTERM, an error) flushes the queue first.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

# writes waiting at most, before ``put`` waits for the thread
QUEUE_LIMIT = 8


class WriteBehind:
    """One daemon thread making the writes put to it, oldest first."""

    def __init__(self, limit: int = QUEUE_LIMIT, name: str = "mlflow-write-behind") -> None:
        self._queue: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue(limit)
        self._name = name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def put(self, write: Callable[[], Any]) -> Future[Any]:
        """Queue `write`; its future holds what it returns once it has run."""
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        done: Future[Any] = Future()
        self._queue.put((write, done))
        return done

    def flush(self) -> None:
        """Wait until every write put so far has run; raise the first that failed."""
        self._queue.join()
        self._raise()

    @property
    def pending(self) -> int:
        """Writes put and not run yet."""
        return self._queue.unfinished_tasks

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _work(self) -> None:
        while True:
            write, done = self._queue.get()
            try:
                done.set_result(write())
            except BaseException as ex:
                done.set_exception(ex)
                if self._error is None:
                    self._error = ex
            finally:
                self._queue.task_done()
