"""What a resume rests on: iterations read back exactly, the search never repeats a told
candidate, and the keys a resume may or may not change. Real MLflow store, no Ray."""

from __future__ import annotations

import math

import pytest
from conftest import typed
from omegaconf import OmegaConf

import automl_runner
from automl_runner.config.schema import TrackingConfig
from automl_runner.config.settings import describe, differing_keys
from automl_runner.errors import ConfigError
from automl_runner.records import (
    CANCELLED,
    COMPLETED,
    FAILED,
    MEMOUT,
    Candidate,
    IterationResult,
    counts,
)
from automl_runner.search.random_search import RandomSearch
from automl_runner.search.tpe import TPESearch
from automl_runner.space import SearchSpace
from automl_runner.tracking.resume import check_same_search, open_run, read_previous
from automl_runner.tracking.store import Tracker


def _tracker(tmp_path, cfg):
    tracking = TrackingConfig(kind="local", store_dir=str(tmp_path / "mlflow"))
    tracker = Tracker(tracking, "resume-test")
    tracker.start_parent(
        describe(cfg),
        primary_metric="AUC_weighted",
        estimators=list(cfg.search_space.estimators),
        overrides=[],
        data_summary=None,
    )
    return tracker


CANDIDATE = Candidate(
    preprocessor="standard_scaler",
    preprocessor_target="sklearn.preprocessing.StandardScaler",
    preprocessor_params={"with_mean": True},
    estimator="mlp",
    estimator_target="sklearn.neural_network.MLPClassifier",
    estimator_params={"hidden_layer_sizes": [64, 32], "alpha": 0.000123456789, "tol": None},
    description="Standardize mlp",
    family="MLP",
    origin="random",
)


def test_iterations_read_back_exactly_as_they_were_logged(tmp_path):
    cfg = automl_runner.compose([])
    tracker = _tracker(tmp_path, cfg)
    # a candidate past MLflow's tag limit goes through an artifact
    long = Candidate(**{**CANDIDATE.__dict__, "estimator_params": {"classes": list(range(3000))}})
    logged = [
        IterationResult(
            0,
            CANDIDATE,
            COMPLETED,
            {"AUC_weighted": [0.91, 0.93], "accuracy": [0.8, math.nan]},
            duration=1.5,
            node="host/abc",
        ),
        IterationResult(2, long, FAILED, duration=0.1, node="host/abc", error="boom", log="boom"),
        IterationResult(1, CANDIDATE, CANCELLED, duration=3.0, node="host/def", log="stop"),
        # stopped past its memory limit: finished, and not run again
        IterationResult(3, CANDIDATE, MEMOUT, duration=2.0, node="host/ghi", error="past", log="x"),
    ]
    for r in logged:
        tracker.log_iteration(r, "AUC_weighted", None, 0)
    tracker.flush()
    run = tracker.client.get_run(tracker.parent_id)
    previous = read_previous(tracker.client, run)
    assert [r.iteration for r in previous.results] == [0, 1, 2, 3]
    assert previous.next_iteration == 4
    assert counts(previous.results)["memout"] == 1
    assert tracker.client.get_run(previous.run_ids[3]).info.status == "FAILED"
    back = {r.iteration: r for r in previous.results}
    for r in logged:
        got = back[r.iteration]
        assert got.candidate == r.candidate and got.candidate.key() == r.candidate.key()
        assert (got.status, got.duration, got.node) == (r.status, r.duration, r.node)
        assert got.fold_scores.keys() == r.fold_scores.keys()
    assert back[0].fold_scores["AUC_weighted"] == [0.91, 0.93]
    assert math.isnan(back[0].fold_scores["accuracy"][1])
    assert back[0].mean("AUC_weighted") == pytest.approx(0.92)
    assert set(previous.run_ids) == {0, 1, 2, 3}


def test_a_child_run_the_driver_died_logging_is_run_again_under_a_new_number(tmp_path):
    cfg = automl_runner.compose([])
    tracker = _tracker(tmp_path, cfg)
    tracker.log_iteration(
        IterationResult(0, CANDIDATE, COMPLETED, {"AUC_weighted": [0.9]}), "x", None, 1
    )
    tracker.flush()
    # created, never filled nor ended: what SIGKILL between two MLflow calls leaves
    half = tracker.client.create_run(
        tracker.experiment_id,
        tags={"mlflow.parentRunId": tracker.parent_id, "automl.iteration": "1"},
    )
    previous = read_previous(tracker.client, tracker.client.get_run(tracker.parent_id))
    assert [r.iteration for r in previous.results] == [0]
    assert previous.next_iteration == 2
    assert tracker.client.get_run(half.info.run_id).info.lifecycle_stage == "deleted"


def test_a_finished_run_or_an_iteration_run_cannot_be_resumed(tmp_path):
    cfg = automl_runner.compose([])
    tracker = _tracker(tmp_path, cfg)
    logged = tracker.log_iteration(
        IterationResult(0, CANDIDATE, COMPLETED), "AUC_weighted", None, 1
    )
    child = logged.result()
    with pytest.raises(ConfigError, match=f"pass its parent run {tracker.parent_id}"):
        open_run(tracker.client, child, tracker.uri)
    tracker.client.set_terminated(tracker.parent_id, "FINISHED")
    with pytest.raises(ConfigError, match="that experiment finished; there is nothing to resume"):
        open_run(tracker.client, tracker.parent_id, tracker.uri)
    with pytest.raises(ConfigError, match="no such run"):
        open_run(tracker.client, "0" * 32, tracker.uri)


def test_only_budgets_compute_tracking_and_explain_may_change_on_resume(tmp_path):
    original = automl_runner.compose(["data=iris"])
    tracker = _tracker(tmp_path, original)
    same_search = automl_runner.compose(
        [
            "data=iris",
            "automl.iterations=50",
            "automl.experiment_timeout_minutes=30",
            "automl.max_concurrent_iterations=8",
            "automl.model_explainability=false",
            "compute=ray",
            "compute.address=10.0.0.1:6379",
            "tracking.experiment_name=elsewhere",
            "explain.rows=5",
            f"automl.resume={tracker.parent_id}",
        ]
    )
    check_same_search(tracker.client, tracker.parent_id, describe(same_search).flat)
    other = automl_runner.compose(
        [
            "data=wine",
            "automl.primary_metric=accuracy",
            "search_space.estimators.svc.params.C.high=5",
        ]
    )
    assert differing_keys(
        OmegaConf.to_container(original, resolve=True), OmegaConf.to_container(other, resolve=True)
    ) == [
        "automl.primary_metric (AUC_weighted -> accuracy)",
        "data.name (iris -> wine)",
        "search_space.estimators.svc.params.C.high (1000.0 -> 5.0)",
    ]
    with pytest.raises(ConfigError, match=r"differs from that run's: automl.primary_metric"):
        check_same_search(tracker.client, tracker.parent_id, describe(other).flat)


@pytest.mark.parametrize("strategy", ["tpe", "random"])
def test_the_search_never_proposes_a_candidate_it_was_told_about(strategy):
    cfg = typed([])
    space = SearchSpace.for_task(cfg.search_space, cfg.automl)

    def make():
        if strategy == "tpe":
            return TPESearch(space, seed=0, metric="AUC_weighted")
        return RandomSearch(space, seed=0)

    first = make().ask(15)
    resumed = make()
    for i, c in enumerate(first[:3] + first[5:9]):  # a resume tells what finished, gaps included
        resumed.tell(IterationResult(i, c, COMPLETED, {"AUC_weighted": [0.5]}, duration=1.0))
    told = {c.key() for c in first[:3] + first[5:9]}
    again = resumed.ask(20)
    assert not told & {c.key() for c in again}
    assert len({c.key() for c in again}) == 20
    # the families whose default did not finish still get their default first
    defaults = [c for c in first if c.origin == "portfolio" and c.key() not in told]
    assert [c.key() for c in again[: len(defaults)]] == [c.key() for c in defaults]
