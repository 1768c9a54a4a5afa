"""The tracking journal (tracking/journal.py) against a real SQLite MLflow store, the
network between them cut and restored by `Link`: what is written while the server is
away reaches MLflow once it is back, in order, with the runs created meanwhile under
their real ids; a replay never writes twice. tests/system/test_faults.py kills a real
`mlflow server` instead."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from automl_runner.tracking import journal, schema
from automl_runner.tracking.control import DriverChannel
from automl_runner.tracking.journal import JournaledClient, ServerAway, connection_lost


class Link:
    """An MlflowClient of a real store whose every call fails as a refused connection
    while `down` (after `fail_after` more calls, if set)."""

    def __init__(self, client: MlflowClient) -> None:
        self.client, self.down, self.fail_after = client, False, None
        self.calls: list[str] = []

    def __getattr__(self, name):
        method = getattr(self.client, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            if self.fail_after is not None:
                self.fail_after -= 1
                if self.fail_after < 0:
                    self.down = True
            if self.down:
                raise requests.exceptions.ConnectionError(f"[Errno 111] refused: {name}")
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = MlflowClient(uri)
    experiment = store.create_experiment("journal", artifact_location=(tmp_path / "a").as_uri())
    link, clock = Link(store), Clock()
    client = JournaledClient(link, tmp_path / "journal", 60.0, uri, clock=clock)
    return store, link, clock, client, experiment, tmp_path


def _back(link, clock):
    """The server answers again, and the next try is due."""
    link.down = False
    clock.now += journal.RETRY_MAX_SECONDS + 1


def test_writes_while_away_reach_mlflow_in_order_with_real_run_ids(setup):
    store, link, clock, client, experiment, _ = setup
    parent = client.create_run(experiment).info.run_id
    link.down = True
    # a child created while the server is away gets a stand-in id...
    child = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
    assert child.startswith(journal.PENDING_RUN)
    client.log_batch(child, metrics=[Metric("m", 0.5, 0, 0)], params=[Param("p", "1")])
    client.log_text(child, "hello", "notes/hello.txt")
    client.set_terminated(child, "FINISHED")
    # ...that the parent's tag names, as a caller holding it would write it
    client.set_tag(parent, "best_run", child)
    for step in range(3):
        client.log_metric(parent, "best", float(step), step=step)
    assert client.away and client.journal.exists()
    assert len(store.search_runs([experiment])) == 1
    # back: the next write replays the journal first, then goes through
    _back(link, clock)
    client.set_tag(parent, "after", child)
    assert not client.away and client.outages and not client.journal.exists()
    real = client.resolve(child)
    assert not real.startswith(journal.PENDING_RUN)
    run = store.get_run(real)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"m": 0.5} and run.data.params == {"p": "1"}
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert (
        open(store.download_artifacts(real, "notes/hello.txt")).read()  # noqa: SIM115
        == "hello"
    )
    tags = store.get_run(parent).data.tags
    # the stand-in, held by the caller after the outage ended, is swapped too
    assert tags["best_run"] == real and tags["after"] == real
    history = store.get_metric_history(parent, "best")
    assert [(m.step, m.value) for m in history] == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_reads_while_away_raise_and_the_control_channel_reads_no_request(setup):
    store, link, clock, client, experiment, _ = setup
    parent = client.create_run(experiment).info.run_id
    store.set_tag(parent, schema.STOP, schema.REQUESTED)
    channel = DriverChannel(client, parent, poll_seconds=0)
    link.down = True
    with pytest.raises(ServerAway):
        client.get_run(parent)
    assert not channel.requests(force=True).stop
    _back(link, clock)
    assert channel.requests(force=True).stop


def test_the_outage_limit_expires_and_settle_gives_up(setup):
    _, link, clock, client, experiment, _ = setup
    parent = client.create_run(experiment).info.run_id
    link.down = True
    client.set_tag(parent, "a", "1")
    clock.now += 59
    assert client.away and not client.expired
    clock.now += 2
    assert client.expired
    assert client.settle() is False
    assert journal.pending_writes(client.folder) == 1


def test_a_replay_cut_short_goes_on_where_it_stopped_and_never_writes_twice(setup):
    store, link, clock, client, experiment, tmp_path = setup
    parent = client.create_run(experiment).info.run_id
    link.down = True
    for step in range(6):
        client.log_metric(parent, "m", float(step), step=step)
    # the server answers for three writes, then goes away again mid-replay
    link.down, link.fail_after = False, 3
    clock.now += journal.RETRY_MAX_SECONDS + 1
    assert client.settle(wait=False) is False
    assert journal.pending_writes(client.folder) == 3
    # the rest from another process: `automl-ctl replay`, twice
    link.fail_after = None
    ctl = [sys.executable, "-m", "automl_runner.entry.ctl", "replay", str(client.folder)]
    first = subprocess.run(ctl, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("replayed 3 journaled write(s)")
    again = subprocess.run(ctl, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.startswith("replayed 0"), again.stderr
    history = store.get_metric_history(parent, "m")
    assert sorted(m.step for m in history) == list(range(6))


def test_a_folder_logged_while_away_is_kept_though_the_caller_deletes_it(setup):
    store, link, clock, client, experiment, tmp_path = setup
    parent = client.create_run(experiment).info.run_id
    folder = tmp_path / "shap"
    folder.mkdir()
    (folder / "values.csv").write_text("a,b\n1,2\n")
    link.down = True
    client.log_artifacts(parent, str(folder), "explanation")
    (folder / "values.csv").unlink()
    folder.rmdir()
    _back(link, clock)
    assert client.settle(wait=False)
    assert [a.path for a in store.list_artifacts(parent, "explanation")] == [
        "explanation/values.csv"
    ]


def test_a_model_logged_while_away_is_logged_after_with_its_real_uri(setup):
    from sklearn.linear_model import LogisticRegression

    from automl_runner.tracking import models

    store, link, clock, client, experiment, _ = setup
    parent = client.create_run(experiment).info.run_id
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    link.down = True
    uri = client.log_model(experiment, parent, model, X[:5])
    assert uri.startswith(journal.PENDING_MODEL)
    _back(link, clock)
    assert client.settle(wait=False)
    real = client.resolve(uri)
    assert real.startswith("models:/")
    assert store.get_run(parent).data.tags[schema.BEST_MODEL_URI] == real
    loaded = models.load_model(store.tracking_uri, real)
    assert (loaded.predict(X) == model.predict(X)).all()


def test_a_write_the_server_refuses_is_raised_not_journaled(setup):
    from mlflow.exceptions import MlflowException

    _, _, _, client, _, _ = setup
    with pytest.raises(MlflowException):
        client.set_tag("no-such-run", "a", "1")
    assert not client.away and not client.journal.exists()


def test_a_refused_connection_to_a_real_http_store_is_an_outage(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        MlflowClient("http://127.0.0.1:1").set_tag("r", "a", "1")
    assert connection_lost(raised.value)
    assert time.monotonic() - started < 30
    assert not connection_lost(ValueError("Run 'r' not found"))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
