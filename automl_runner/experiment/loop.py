"""The search loop, as DESIGN.md draws it:

    while the budget allows:
        search.ask(k)            k = free slots, in the order the tells allow (ordering)
        executor.submit(spec)    a Ray task: build the pipeline, CV-score it
        executor.next_done()     what finished, or was killed at its timeout
        search.tell(result); tracking.log_iteration(result); console.row(result)

between which the driver reads the requests on its parent run and Ctrl-C (steering) and
keeps its progress there. The child run, and then its row, are written behind the loop
by one thread (tracking/behind.py), so a freed slot is filled before they are. It ends
when the iteration budget is spent, the time budget's search part is over (the
iterations in flight are cancelled), the search stops early (stopping), or a stop
request or Ctrl-C cancels what runs.
"""

from __future__ import annotations

import logging
import sys
import time

from ..config.schema import AutoMLConfig
from ..engine.executor import Executor
from ..records import CANCELLED, Candidate, IterationResult, ended
from ..search.ordering import TellOrder
from ..search.strategy import Strategy
from ..tracking.control import POLL_SECONDS
from .budget import Budget
from .record import Record
from .steering import Steering

log = logging.getLogger(__name__)


class SearchLoop:
    """One experiment's search; its state is its attributes."""

    def __init__(
        self,
        automl: AutoMLConfig,
        strategy: Strategy,
        order: TellOrder,
        executor: Executor,
        record: Record,
        budget: Budget,
        steering: Steering,
        slots: int,
        first_iteration: int,
    ) -> None:
        self.automl, self.strategy, self.order = automl, strategy, order
        self.executor, self.record, self.budget, self.steering = executor, record, budget, steering
        self.slots = slots
        # the number the next launched iteration gets
        self.number = first_iteration
        # iterations a cancel request named before they started
        self.cancel_at_start: set[int] = set()
        # the candidate the next free slot runs, asked while every slot was busy
        self.ahead: list[Candidate] = []

    @property
    def to_go(self) -> int:
        """Search iterations the iteration budget still allows to launch."""
        if self.automl.iterations is None:  # a time budget alone: the clock ends the search
            return sys.maxsize
        return self.automl.iterations - self.record.searched - self.executor.in_flight

    @property
    def free(self) -> int:
        return self.slots - self.executor.in_flight

    def run(self) -> None:
        while True:
            self.steering.poll(self.cancel)
            launched = self.fill_slots()
            if self.steering.stopping and self.executor.in_flight:
                self.cancel_running(f"cancelled: {self.steering.stopping}")
            self.steering.progress()
            if self.executor.in_flight == 0:
                if launched:  # every candidate asked was cancelled before it started
                    continue
                break
            self.ask_ahead()
            if not self.collect():
                break
        self.order.flush()
        # the last rows on the console (and runs in MLflow) before what follows the search
        self.record.flush()

    def may_launch(self) -> bool:
        return (
            self.to_go > 0
            and not self.steering.stopping
            and self.order.stopper.reason is None
            and self.budget.searching()
        )

    def fill_slots(self) -> bool:
        """Launch candidates (the one asked ahead first) while a slot is free and nothing
        says stop; whether any was launched."""
        launched = False
        while self.free > 0 and self.may_launch():
            batch = self.ahead or self.ask(min(self.free, self.to_go))
            self.ahead = []
            if not batch:
                break
            for candidate in batch:
                self.launch(candidate)
                launched = True
        return launched

    def ask_ahead(self) -> None:
        """Under an iteration budget, while every slot is busy, ask for the candidate the
        next free slot will run: the ask (~10 ms of TPE) is then off the path from a
        result to the next launch, and the candidate is the one a later ask would give
        (the tells it follows are fixed: ordering.TellOrder). Under a time budget every
        result is told as it arrives, and an ask made ahead would miss the latest."""
        if self.order.ordered and not self.ahead and self.free == 0 and self.may_launch():
            self.ahead = self.ask(1)

    def ask(self, n: int) -> list[Candidate]:
        """Up to `n` candidates, as many as the tell order allows now."""
        wanted = self.order.asks(n)
        if wanted == 0:
            return []
        batch = self.strategy.ask(wanted)
        if len(batch) < wanted:
            self.order.stopper.used_up()
        return batch

    def launch(self, candidate: Candidate) -> None:
        n = self.number
        self.order.launch(n)
        if n in self.cancel_at_start:
            why = "cancelled on request before it started"
            self.number += 1
            self.handle(ended(n, candidate, CANCELLED, why))
            return
        self.executor.submit(n, candidate)
        self.steering.launched(n)
        self.number += 1

    def collect(self) -> bool:
        """Wait (a poll period at most) for the next finished iteration and handle it;
        False once the time budget's search part is over (what runs is cancelled)."""
        wait_until = time.monotonic() + POLL_SECONDS
        with self.steering.safe():
            done = self.executor.next_done(min(self.budget.search_ends(), wait_until))
        if done is not None:
            self.handle(done)
            return True
        if self.budget.timed and not self.budget.searching():
            log.info(
                "experiment_timeout_minutes: %.1f s left, kept for the ensembles, "
                "the refit, logging and evaluating the model; cancelling %d running "
                "iteration(s)",
                self.budget.left(),
                self.executor.in_flight,
            )
            self.cancel_running("experiment_timeout_minutes reached")
            return False
        return True

    def handle(self, r: IterationResult) -> None:
        """One finished search iteration: recorded (MLflow, console), learnt from by the
        budget, told to the search (in its turn)."""
        self.record.add(r)
        self.budget.observe(r, self.steering.launched_at.get(r.iteration), self.record.results)
        self.order.finished(r)

    def cancel_running(self, reason: str) -> None:
        for r in self.executor.cancel_all(reason):
            self.handle(r)

    def cancel(self, n: int) -> str:
        """Act on a request to cancel iteration n; the answer written back to the run."""
        r = self.executor.cancel(n, "cancelled on request")
        if r is not None:
            self.handle(r)
            return "cancelled"
        done = {x.iteration: x.status for x in self.record.results}
        if n in done:
            return f"ignored: iteration {n} already finished ({done[n]})"
        if n in self.executor.running():
            return f"ignored: iteration {n} finished before the cancel arrived"
        if self.number <= n < self.number + self.to_go:
            self.cancel_at_start.add(n)
            return "cancelled before it starts"
        return f"ignored: this experiment runs no iteration {n}"
