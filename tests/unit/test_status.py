"""Status read from a real MLflow store: every state a live driver writes counts as active
(so `wait` does not return and `stop`/`cancel` are not refused mid-run). The states are
tracking.schema's constants; tests/unit/test_loop.py reads a stopping run's status."""

from __future__ import annotations

import time

import pytest

from automl_runner.config.schema import TrackingConfig
from automl_runner.config.settings import Described
from automl_runner.tracking import control, schema
from automl_runner.tracking.status import ACTIVE, read_status
from automl_runner.tracking.store import Tracker


@pytest.mark.parametrize("state", ACTIVE)
def test_a_run_whose_driver_is_alive_is_active_in_every_active_state(tmp_path, state):
    tracking = TrackingConfig(kind="local", store_dir=str(tmp_path / "mlflow"))
    tracker = Tracker(tracking, "status-test")
    parent = tracker.start_parent(Described("{}\n", {}), "AUC_weighted", [], [], None)
    # this process is the driver
    tracker.client.set_tag(parent, schema.DRIVER, control.driver_id())
    tracker.client.set_tag(parent, schema.STATE, state)
    ensemble = tracker.client.create_run(
        tracker.experiment_id,
        tags={"mlflow.parentRunId": parent, "automl.kind": "ensemble"},
    )
    for run_id in (parent, ensemble.info.run_id):  # an ensemble's run leads to its parent
        st = read_status(tracker.client, run_id, tracker.uri)
        assert st.run_id == parent and st.state == state and st.active


def _parent(tmp_path) -> tuple[Tracker, str]:
    tracking = TrackingConfig(kind="local", store_dir=str(tmp_path / "mlflow"))
    tracker = Tracker(tracking, "status-test")
    return tracker, tracker.start_parent(Described("{}\n", {}), "AUC_weighted", [], [], None)


def test_a_lost_run_shows_the_time_its_driver_ran(tmp_path):
    tracker, parent = _parent(tmp_path)
    now = time.time()
    # a driver on another host, last heard of 40 s ago (past three heartbeats): LOST
    for key, value in {
        schema.DRIVER: "elsewhere:1234",
        schema.STATE: schema.SEARCHING,
        schema.SESSION_STARTED: f"{now - 100:.3f}",
        schema.HEARTBEAT: f"{now - 40:.3f}",
        schema.ELAPSED_BEFORE: "5",
    }.items():
        tracker.client.set_tag(parent, key, value)
    st = read_status(tracker.client, parent, tracker.uri)
    assert st.state == "LOST"
    # earlier drivers' 5 s, then 60 s from the session's start to the last heartbeat
    assert st.elapsed_seconds == pytest.approx(65, abs=0.1)
    assert "elapsed:         0:01:05 (no time budget)" in str(st)


def test_the_status_counts_iterations_stopped_past_their_memory_limit():
    from automl_runner.tracking.status import ExperimentStatus

    st = ExperimentStatus("r", "e", "uri", "FINISHED", "AUC_weighted", iterations=4)
    st.completed, st.failed, st.memout = 2, 1, 1
    assert st.done == 4
    assert "4 of 4 done: 2 completed, 1 failed, 0 timed out, 0 cancelled, 1 out of memory;" in str(
        st
    )
    st.memout = 0
    assert "out of memory" not in str(st)
