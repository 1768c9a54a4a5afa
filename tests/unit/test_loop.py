"""The search loop in this process: the serial executor behind the Executor protocol, a
real MLflow store (one per module), the loop assembled as an experiment assembles it.

Completion order, stop and cancel requests are driven from here, so each rule of the
loop (ordered tells, budgets, early stopping, the exit score, steering, failures) is
checked in a second instead of by a whole experiment on Ray.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import BROKEN, SLOW, mlflow_runs

import automl_runner
from automl_runner.config.settings import describe, settings
from automl_runner.engine.serial import SerialExecutor
from automl_runner.experiment.budget import (
    EVALUATION_SECONDS,
    LOG_SECONDS,
    RESTART_SECONDS,
    finishing_seconds,
)
from automl_runner.experiment.loop import SearchLoop
from automl_runner.experiment.record import Record
from automl_runner.experiment.run import search_loop
from automl_runner.experiment.setup import Setup, set_up
from automl_runner.experiment.steering import Steering
from automl_runner.records import CANCELLED, COMPLETED, FAILED, TIMEOUT
from automl_runner.tracking import schema
from automl_runner.tracking.control import DriverChannel, request_cancel, request_stop
from automl_runner.tracking.status import read_status

DUMMY = (
    "++search_space.estimators={dummy: {_target_: sklearn.dummy.DummyClassifier,"
    " name: Dummy, display: dummy, task: classification}}"
)


class ShuffledExecutor(SerialExecutor):
    """Finishes the iterations in flight in a seeded random order, not the order submitted."""

    def __init__(self, data, seed: int, **kw) -> None:
        super().__init__(data, **kw)
        self.rng = random.Random(seed)

    def _pick(self) -> int:
        return self.rng.randrange(len(self._queue))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> list[str]:
    return [f"tracking.store_dir={tmp_path_factory.mktemp('loop') / 'mlflow'}"]


@contextmanager
def loop_for(overrides: list[str], slots: int = 1, executor=None) -> Iterator[SearchLoop]:
    """A search loop over `overrides` (serial, `slots` at once), ready to run."""
    composed = automl_runner.compose(overrides)
    cfg = settings(composed)
    started = time.monotonic()
    with set_up(cfg, describe(composed), overrides, {}, serial=True) as s:
        s.slots = slots
        if executor is not None:
            s.executor = executor(s)
        record = Record(s.tracker, cfg.automl.primary_metric, cfg.automl.ensemble_candidates)
        # every poll reads the requests: the tests set them between two iterations
        channel = DriverChannel(s.tracker.client, s.parent_id, poll_seconds=0.0)
        steering = Steering(channel, s.executor, record)
        loop = search_loop(s, record, steering, started)
        channel.start(cfg.automl.iterations, cfg.automl.experiment_timeout_minutes, 0.0)
        try:
            yield loop
        finally:
            # as the experiment does: the child runs written behind the loop, then the end
            record.flush()
            channel.close("FINISHED")


def candidates(loop: SearchLoop) -> list[tuple[int, str, float | None]]:
    metric = loop.automl.primary_metric
    return sorted((r.iteration, r.candidate.key(), r.mean(metric)) for r in loop.record.results)


@pytest.mark.parametrize("search", ["tpe", "random"])
def test_ordered_tells_give_the_same_candidates_whatever_finishes_first(store, search):
    # one tree family under TPE: its family choice (by measured cost) has one answer, so
    # the candidates depend on the told results alone; random search has no timing in it
    families = "[DecisionTree]" if search == "tpe" else "[DecisionTree,KNN,LogisticRegression]"
    base = [
        "data=iris",
        f"automl.search={search}",
        f"automl.allowed_models={families}",
        "automl.iterations=16",
        "automl.enable_early_stopping=false",
        *store,
    ]
    runs = {}
    for name, executor in [
        ("in order", None),
        ("shuffled 0", lambda s: ShuffledExecutor(s.data, seed=0)),
        ("shuffled 1", lambda s: ShuffledExecutor(s.data, seed=1)),
    ]:
        with loop_for(base, slots=2, executor=executor) as loop:
            loop.run()
            runs[name] = candidates(loop)
            if executor is not None:
                # the order really was disturbed: some iteration finished before an earlier one
                finished = [r.iteration for r in loop.record.results]
                assert finished != sorted(finished)
    assert len(runs["in order"]) == 16
    assert len({c[1] for c in runs["in order"]}) == 16  # no point twice
    assert runs["shuffled 0"] == runs["in order"] == runs["shuffled 1"]


def test_told_results_follow_launch_order_and_no_ask_runs_ahead_of_the_lag(store):
    overrides = ["data=iris", "automl.allowed_models=[DecisionTree]", "automl.iterations=20"]
    with loop_for([*overrides, "automl.enable_early_stopping=false", *store], slots=2) as loop:
        told: list[int] = []
        tell = loop.strategy.tell

        def spy(result):
            told.append(result.iteration)
            tell(result)

        loop.strategy.tell = spy  # type: ignore[method-assign]
        loop.executor = loop.steering.executor = ShuffledExecutor(loop.executor.data, seed=3)
        loop.run()
    assert told == list(range(20))
    assert loop.order.lag == 6


def test_the_next_candidate_is_asked_while_the_slots_are_busy_and_never_past_the_budget(store):
    """With every slot busy the loop asks for the next free slot's candidate: when a
    result arrives, the next launch has no ask before it. Under an iteration budget no
    ask is made past it, and the candidates are those asked when a slot frees (the
    shuffled finishes above hold them to that)."""
    overrides = ["data=iris", "automl.allowed_models=[DecisionTree]", "automl.iterations=9"]
    with loop_for([*overrides, "automl.enable_early_stopping=false", *store], slots=2) as loop:
        asked_busy: list[int] = []
        ask = loop.strategy.ask

        def spy(n):
            if loop.free == 0:
                asked_busy.append(n)
            return ask(n)

        loop.strategy.ask = spy  # type: ignore[method-assign]
        loop.run()
    assert len(loop.record.results) == 9 and loop.ahead == []
    # the 2 first launches fill the empty slots; every later one was asked while busy
    assert len(asked_busy) == 7 and set(asked_busy) == {1}


def test_early_stopping_ends_the_search_after_patience_told_iterations(store):
    overrides = [
        "data=iris",
        DUMMY,
        "automl.allowed_models=[Dummy]",
        "automl.iterations=50",
        "automl.early_stopping_patience=3",
        *store,
    ]
    with loop_for(overrides) as loop:
        loop.run()
    # every iteration scores the same: the first is the best, three more without gain
    assert len(loop.record.results) == 4
    assert loop.order.stopper.reason.startswith("early stopping: no improvement in 3")


def test_early_stopping_off_runs_the_whole_budget(store):
    overrides = [
        "data=iris",
        DUMMY,
        "automl.allowed_models=[Dummy]",
        "automl.iterations=8",
        "automl.early_stopping_patience=3",
        "automl.enable_early_stopping=false",
        *store,
    ]
    with loop_for(overrides) as loop:
        loop.run()
    assert len(loop.record.results) == 8 and loop.order.stopper.reason is None


def test_a_time_budget_is_spent_early_stopping_and_iterations_left_at_their_defaults(store):
    """Under experiment_timeout_minutes the defaults neither bound the iterations nor
    stop on patience: Dummy never improves, yet the search runs to the budget's end."""
    # the reserve kept after the search is 6.5 s at least (restart, logging, evaluation):
    # 14 s leaves the search several seconds even when the first worker starts cold
    budget_s = 14.0
    overrides = [
        "data=iris",
        # a million points that all score the same: the space is not used up, and the
        # score never improves
        DUMMY.replace(
            "task: classification",
            "task: classification, params: {random_state: {type: int, low: 0, high: 999999}}",
        ),
        "automl.allowed_models=[Dummy]",
        "automl.early_stopping_patience=3",
        f"automl.experiment_timeout_minutes={budget_s / 60}",
        *store,
    ]
    with loop_for(overrides) as loop:
        assert loop.automl.iterations is None and loop.automl.enable_early_stopping is False
        loop.run()
    assert loop.order.stopper.reason is None
    # the clock ended it: the search part of the budget was over when the loop returned
    assert not loop.budget.searching()
    assert len(loop.record.results) > 20  # past both the old 20 and patience 3
    # set explicitly, early stopping holds under a time budget too
    with loop_for([*overrides, "automl.enable_early_stopping=true"]) as stopped:
        stopped.run()
    assert stopped.order.stopper.reason.startswith("early stopping: no improvement in 3")
    assert len(stopped.record.results) < 10
    assert stopped.budget.searching()  # it stopped before the budget's end


def test_without_a_time_budget_the_defaults_are_twenty_iterations_and_early_stopping(store):
    cfg = settings(automl_runner.compose(["data=iris"]))
    assert cfg.automl.iterations == 20 and cfg.automl.enable_early_stopping is True
    explicit = settings(
        automl_runner.compose(
            ["data=iris", "automl.iterations=7", "automl.enable_early_stopping=false"]
        )
    )
    assert explicit.automl.iterations == 7 and explicit.automl.enable_early_stopping is False


def test_a_perfect_score_ends_the_search_as_nothing_can_beat_it(store, tmp_path):
    script = tmp_path / "separable.py"
    script.write_text(
        "import numpy as np\n"
        "def get_data():\n"
        "    rng = np.random.default_rng(0)\n"
        "    y = rng.integers(0, 2, 200)\n"
        "    return {'X': np.column_stack([y, rng.normal(size=200)]), 'y': y}\n"
    )
    overrides = [
        "data=script",
        f"data.path={script}",
        "automl.allowed_models=[DecisionTree]",
        "automl.iterations=30",
        "automl.enable_early_stopping=false",
        *store,
    ]
    with loop_for(overrides) as loop:
        loop.run()
    # a tree splits the first column perfectly: its first try scores AUC 1, and is the last
    assert loop.record.results[0].mean("AUC_weighted") == 1.0
    assert len(loop.record.results) == 1
    assert loop.order.stopper.reason == "a perfect AUC_weighted (1): nothing can score better"


def test_the_exit_score_ends_the_search_once_reached(store):
    overrides = [
        "data=iris",
        "automl.allowed_models=[LogisticRegression,DecisionTree]",
        "automl.iterations=30",
        "automl.experiment_exit_score=0.95",
        *store,
    ]
    with loop_for(overrides) as loop:
        loop.run()
    best = loop.record.best_score
    assert best is not None and best >= 0.95
    assert "automl.experiment_exit_score=0.95 reached" in loop.order.stopper.reason
    # with one slot every result is told before the next ask: nothing runs past it
    first_reaching = min(
        r.iteration for r in loop.record.results if (r.mean("AUC_weighted") or 0) >= 0.95
    )
    assert max(r.iteration for r in loop.record.results) == first_reaching
    unreachable = [
        "data=iris",
        "automl.allowed_models=[LogisticRegression,DecisionTree]",
        "automl.iterations=6",
        "automl.experiment_exit_score=1.5",
        *store,
    ]
    with loop_for(unreachable) as never:
        never.run()
    assert len(never.record.results) == 6 and never.order.stopper.reason is None


def test_a_time_budget_keeps_its_reserve_and_ends_the_search_before_the_deadline(store):
    budget_s = 10.0
    overrides = [
        "data=iris",
        # a range, not a fixed value: the preprocessors' points alone run out within the
        # budget on a fast machine (the search then ends, reason "every candidate ...")
        SLOW.replace(
            "task: classification",
            "task: classification, default: {seconds: 0.05},"
            " params: {seconds: {type: float, low: 0.05, high: 0.051}}",
        ),
        "automl.allowed_models=[Slow]",
        "automl.iterations=1000",
        "automl.enable_early_stopping=false",
        f"automl.experiment_timeout_minutes={budget_s / 60}",
        *store,
    ]
    with loop_for(overrides) as loop:
        loop.run()
        ended = time.monotonic()
    budget = loop.budget
    n = len(loop.record.results)
    assert 2 <= n < 1000
    # the reserve is the estimate of what follows the search, from these results
    assert budget.reserve == pytest.approx(
        finishing_seconds(
            loop.record.results, budget.data, loop.automl, 1, restart=budget.cold_start
        ),
        rel=0.5,
    )
    # restarting workers, logging and evaluating the model, at least
    assert budget.reserve >= RESTART_SECONDS + LOG_SECONDS + EVALUATION_SECONDS
    # the loop ended well before the deadline: the reserve (6.5 s at least) was kept for
    # the ensembles, the refit, logging and the evaluation; launched iterations take 0.25 s
    assert ended < budget.deadline - 5.5
    assert all(r.status == COMPLETED for r in loop.record.results)
    assert loop.order.stopper.reason is None


def test_cancel_before_start_and_a_number_the_experiment_never_reaches(store):
    overrides = ["data=iris", DUMMY, "automl.allowed_models=[Dummy]", "automl.iterations=5"]
    with loop_for([*overrides, "automl.enable_early_stopping=false", *store]) as loop:
        client, run_id = loop.record.tracker.client, loop.record.tracker.parent_id
        request_cancel(client, run_id, 2)
        request_cancel(client, run_id, 99)
        loop.run()
    statuses = {r.iteration: r.status for r in loop.record.results}
    assert statuses == {0: COMPLETED, 1: COMPLETED, 2: CANCELLED, 3: COMPLETED, 4: COMPLETED}
    cancelled = next(r for r in loop.record.results if r.iteration == 2)
    assert cancelled.duration == 0.0 and "before it started" in cancelled.error
    tags = client.get_run(run_id).data.tags
    assert tags[schema.cancel_tag(2)] == "cancelled before it starts"
    assert tags[schema.cancel_tag(99)] == "ignored: this experiment runs no iteration 99"


class StopAfter(SerialExecutor):
    """Asks the experiment (through its parent run) to stop once `after` results are back."""

    def __init__(self, s: Setup, after: int) -> None:
        super().__init__(s.data)
        self.client, self.run_id, self.after, self.returned = (
            s.tracker.client,
            s.parent_id,
            after,
            0,
        )

    def next_done(self, deadline=None):
        result = super().next_done(deadline)
        self.returned += result is not None
        if self.returned == self.after:
            request_stop(self.client, self.run_id)
        return result


def test_a_stop_request_cancels_what_runs_and_launches_nothing_more(store):
    overrides = ["data=iris", "automl.allowed_models=[DecisionTree]", "automl.iterations=30"]
    with loop_for(
        [*overrides, "automl.enable_early_stopping=false", *store],
        slots=2,
        executor=lambda s: StopAfter(s, after=3),
    ) as loop:
        loop.run()
        tracker = loop.record.tracker
        tags = tracker.client.get_run(tracker.parent_id).data.tags
        # what automl-ctl status shows meanwhile: stopping, still active (wait goes on)
        status = read_status(tracker.client, tracker.parent_id, tracker.uri)
    assert status.state == schema.STOPPING and status.active
    statuses = [r.status for r in loop.record.results]
    assert statuses.count(COMPLETED) == 3
    # the one in flight at the stop is cancelled; nothing is launched after it
    assert statuses.count(CANCELLED) == 1 and len(statuses) == 4
    assert loop.steering.stopping == "stop requested"
    assert tags[schema.STOP] == "stopping"


def test_a_failing_and_a_timed_out_iteration_are_recorded_and_the_search_goes_on(store):
    overrides = [
        "data=iris",
        BROKEN,
        SLOW.replace("task: classification", "task: classification, fixed: {seconds: 0.3}"),
        "automl.allowed_models=[Broken,Slow,LogisticRegression]",
        "automl.iterations=6",
        # 1.2 s: Slow's 5 folds take 1.5 s
        "automl.iteration_timeout_minutes=0.02",
        "automl.enable_early_stopping=false",
        *store,
    ]
    with loop_for(overrides) as loop:
        loop.run()
        parent = loop.record.tracker.parent_id
        uri, experiment = loop.record.tracker.uri, loop.record.tracker.experiment_id
    by_family: dict[str, set[str]] = {}
    for r in loop.record.results:
        by_family.setdefault(r.candidate.family, set()).add(r.status)
    assert by_family["Broken"] == {FAILED}
    assert by_family["Slow"] == {TIMEOUT}
    assert COMPLETED in by_family["LogisticRegression"]
    assert len(loop.record.results) == 6
    counts = loop.record.counts()
    assert counts["failed"] >= 1 and counts["timed_out"] >= 1
    failed = next(r for r in loop.record.results if r.status == FAILED)
    assert "RuntimeError: this estimator always fails" in failed.error
    _, children = mlflow_runs(uri, experiment)
    mine = [c for c in children if c.data.tags[schema.PARENT] == parent]
    assert {c.data.tags[schema.STATUS]: c.info.status for c in mine} == {
        COMPLETED: "FINISHED",
        FAILED: "FAILED",
        TIMEOUT: "KILLED",
    }
