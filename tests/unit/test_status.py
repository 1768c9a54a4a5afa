"""Status read from a real MLflow store: every state a live driver writes counts as active
(so `wait` does not return and `stop`/`cancel` are not refused mid-run)."""

from __future__ import annotations

import inspect
import re

import pytest
from omegaconf import OmegaConf

from automl_runner import control, experiment
from automl_runner.status import ACTIVE, read_status
from automl_runner.tracking import Tracker


def test_every_state_the_driver_writes_is_an_active_one():
    written = set(re.findall(r'progress\("([A-Z]+)"\)', inspect.getsource(experiment)))
    written |= {"RUNNING", "STOPPING"}  # progress() without an argument
    assert written <= set(ACTIVE), written - set(ACTIVE)


@pytest.mark.parametrize("state", ACTIVE)
def test_a_run_whose_driver_is_alive_is_active_in_every_active_state(tmp_path, state):
    tracking = OmegaConf.create({"kind": "local", "store_dir": str(tmp_path / "mlflow")})
    tracker = Tracker(tracking, "status-test")
    parent = tracker.start_parent("p", {}, "{}\n", [], None, "AUC_weighted")
    # this process is the driver
    tracker.client.set_tag(parent, control.DRIVER, control.driver_id())
    tracker.client.set_tag(parent, control.STATE, state)
    ensemble = tracker.client.create_run(
        tracker.experiment_id,
        tags={"mlflow.parentRunId": parent, "automl.kind": "ensemble"},
    )
    for run_id in (parent, ensemble.info.run_id):  # an ensemble's run leads to its parent
        st = read_status(tracker.client, run_id, tracker.uri)
        assert st.run_id == parent and st.state == state and st.active
