"""The MLflow writes made behind the search loop (tracking/behind.py): in order, their
failures raised to the driver, the queue bounded; and, on a real SQLite store, the
Tracker's child runs all written before the parent run ends, each console row shown
only once its run is in MLflow."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import automl_runner
from automl_runner.experiment.record import Record
from automl_runner.records import COMPLETED, FAILED, IterationResult
from automl_runner.tracking import schema
from automl_runner.tracking.behind import WriteBehind

from .test_resume import CANDIDATE, _tracker


def test_writes_run_in_the_order_they_were_put_and_flush_waits_for_them():
    behind, seen = WriteBehind(), []

    def write(n):
        time.sleep(0.01 if n % 2 else 0.0)  # uneven, so an unordered writer would show
        seen.append(n)
        return n * n

    futures = [behind.put(lambda n=n: write(n)) for n in range(20)]
    behind.flush()
    assert seen == list(range(20))
    assert [f.result(timeout=0) for f in futures] == [n * n for n in range(20)]
    assert behind.pending == 0


def test_a_failed_write_is_raised_at_the_next_put_or_flush_and_the_rest_still_run():
    behind, seen = WriteBehind(), []

    def boom():
        raise ValueError("the store said no")

    failed = behind.put(boom)
    behind.put(lambda: seen.append("after"))
    with pytest.raises(ValueError, match="the store said no"):
        behind.flush()
    assert seen == ["after"]
    assert isinstance(failed.exception(timeout=0), ValueError)
    behind.flush()  # raised once, not again


def test_a_slow_store_holds_the_caller_back_at_the_queue_limit():
    behind, release = WriteBehind(limit=2), threading.Event()
    behind.put(release.wait)  # taken by the thread, which then waits
    time.sleep(0.05)
    behind.put(lambda: None)
    behind.put(lambda: None)  # the queue is full now
    blocked = threading.Thread(target=behind.put, args=(lambda: None,))
    blocked.start()
    blocked.join(timeout=0.3)
    assert blocked.is_alive(), "put did not wait for room in the queue"
    release.set()
    blocked.join(timeout=5)
    behind.flush()
    assert behind.pending == 0


def test_every_child_run_is_written_and_ended_before_the_parent_ends(tmp_path):
    tracker = _tracker(tmp_path, automl_runner.compose([]))
    results = [
        IterationResult(n, CANDIDATE, COMPLETED, {"AUC_weighted": [0.8, 0.9]}, duration=0.1)
        for n in range(12)
    ] + [IterationResult(12, CANDIDATE, FAILED, duration=0.1, error="boom", log="boom")]
    futures = [
        tracker.log_iteration(r, "AUC_weighted", best=0.85, step=n + 1)
        for n, r in enumerate(results)
    ]
    tracker.finish_parent("FINISHED", {}, {}, None)
    ids = [f.result(timeout=0) for f in futures]
    client = tracker.client
    parent = client.get_run(tracker.parent_id)
    assert parent.info.status == "FINISHED"
    for r, run_id in zip(results, ids, strict=True):
        child = client.get_run(run_id)
        assert child.data.tags[schema.PARENT] == tracker.parent_id
        assert child.data.tags[schema.ITERATION] == str(r.iteration)
        assert child.info.status == ("FAILED" if r.status == FAILED else "FINISHED")
        assert child.info.end_time <= parent.info.end_time
    history = client.get_metric_history(tracker.parent_id, "best_AUC_weighted")
    assert [h.step for h in history] == list(range(1, len(results) + 1))


def test_a_child_run_mlflow_refuses_fails_the_driver_at_its_next_write(tmp_path):
    tracker = _tracker(tmp_path, automl_runner.compose([]))
    bad = dataclasses.replace(CANDIDATE, estimator_params={"bad key!": 1})
    tracker.log_iteration(IterationResult(0, bad, COMPLETED, {"AUC_weighted": [0.9]}), "x", None, 1)
    with pytest.raises(MlflowException, match="bad key!"):
        tracker.flush()


def test_a_console_row_is_shown_once_its_child_run_and_best_so_far_are_in_mlflow(tmp_path):
    tracker = _tracker(tmp_path, automl_runner.compose([]))
    reader = MlflowClient(tracker.uri)
    seen: list[tuple[int, int, int]] = []

    class Check(logging.Handler):
        """At each row: the runs of its iteration, and the best-so-far points, in MLflow."""

        def emit(self, record: logging.LogRecord) -> None:
            row = re.match(r"\s+(\d+)\s{3}\S", record.getMessage())
            if row:
                n = row.group(1)
                runs = reader.search_runs(
                    [tracker.experiment_id], filter_string=f"tags.`{schema.ITERATION}` = '{n}'"
                )
                best = reader.get_metric_history(tracker.parent_id, "best_AUC_weighted")
                seen.append((int(n), len(runs), len(best)))

    console = logging.getLogger("automl_runner.console")
    check, level = Check(), console.level
    console.addHandler(check)
    console.setLevel(logging.INFO)
    try:
        record = Record(tracker, "AUC_weighted", keep_predictions=2)
        for n in range(6):
            record.add(IterationResult(n, CANDIDATE, COMPLETED, {"AUC_weighted": [0.5 + n / 10]}))
        record.flush()
    finally:
        console.removeHandler(check)
        console.setLevel(level)
    assert seen == [(n, 1, n + 1) for n in range(6)]
    assert set(record.run_ids) == set(range(6))
