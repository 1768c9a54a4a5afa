"""`automl-ctl` against a real MLflow store whose parent run this process drives."""

from __future__ import annotations

import time

import pytest

from automl_runner.config.schema import TrackingConfig
from automl_runner.config.settings import Described
from automl_runner.entry import ctl
from automl_runner.tracking import control, schema
from automl_runner.tracking.store import Tracker


def test_cancel_of_a_negative_iteration_is_one_line_at_once(tmp_path, capsys):
    tracker = Tracker(TrackingConfig(kind="local", store_dir=str(tmp_path / "mlflow")), "ctl")
    parent = tracker.start_parent(Described("{}\n", {}), "AUC_weighted", [], [], None)
    tracker.client.set_tag(parent, schema.DRIVER, control.driver_id())  # a live driver
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        ctl.main(["cancel", parent, "--tracking-uri", tracker.uri, "--timeout", "5", "--", "-1"])
    assert exit_.value.code == 2
    assert time.monotonic() - started < 3  # not the answer's timeout
    assert capsys.readouterr().err == (
        "automl-ctl: error: iteration -1: no such iteration; iterations are numbered from 0\n"
    )
    # no request left on the run for a driver that would never answer it
    assert not any(schema.is_request(k) for k in tracker.client.get_run(parent).data.tags)
