"""Whole experiments in-process on a real local Ray instance, logged to a real MLflow store."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import BROKEN, INFINITE, NO_ENSEMBLES, SLEEPY, SLOW, mlflow_runs, typed
from mlflow import MlflowClient
from sklearn.datasets import load_breast_cancer, load_iris

import automl_runner
from automl_runner.experiment import NoModelError

pytestmark = pytest.mark.slow


@pytest.fixture
def store(store):
    """The store, and no explanation: none of these tests looks at it (it has its own,
    tests/integration/test_explanation.py)."""
    return [*store, "automl.model_explainability=false"]


def test_experiment_logs_parent_children_leaderboard_and_model(ray_local, store, tmp_path):
    result = automl_runner.run(["data=iris", "automl.iterations=5", *NO_ENSEMBLES, *store])
    parents, children = mlflow_runs(result.tracking_uri, result.experiment_id)
    assert len(parents) == 1 and len(children) == 5
    parent = parents[0]
    assert parent.info.run_id == result.parent_run_id and parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(int(c.data.tags["automl.iteration"]) for c in children) == [0, 1, 2, 3, 4]
    # parent: resolved config as params, overrides, counts, best score
    assert parent.data.params["automl.iterations"] == "5"
    assert parent.data.params["data.name"] == "iris"
    assert parent.data.tags["automl.overrides"].startswith("data=iris automl.iterations=5")
    assert parent.data.metrics["iterations_completed"] == 5
    assert parent.data.metrics["best_AUC_weighted"] == pytest.approx(result.best_score)
    client = MlflowClient(result.tracking_uri)
    history = client.get_metric_history(parent.info.run_id, "best_AUC_weighted")
    assert [h.step for h in history] == [1, 2, 3, 4, 5]
    assert all(a.value <= b.value for a, b in zip(history, history[1:], strict=False))
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config", "leaderboard.csv", "data_summary.json"} <= artifacts
    config_yaml = client.download_artifacts(parent.info.run_id, "config/config.yaml", str(tmp_path))
    assert "primary_metric: AUC_weighted" in Path(config_yaml).read_text()
    board = pd.read_csv(
        client.download_artifacts(parent.info.run_id, "leaderboard.csv", str(tmp_path))
    )
    assert len(board) == 5 and board["AUC_weighted"].is_monotonic_decreasing
    # children: hyperparameters, per-fold and secondary metrics, status, node
    for child in children:
        m = child.data.metrics
        assert {f"AUC_weighted_fold_{k}" for k in range(5)} <= set(m)
        assert np.mean([m[f"AUC_weighted_fold_{k}"] for k in range(5)]) == pytest.approx(
            m["AUC_weighted"]
        )
        assert {"AUC_weighted_std", "accuracy", "norm_macro_recall", "duration_seconds"} <= set(m)
        assert child.data.params["estimator"] and child.data.tags["automl.status"] == "COMPLETED"
        assert child.data.tags["automl.node"] != "unknown"
        assert child.info.status == "FINISHED"
    # get_output: the best iteration's run and the refit pipeline
    best_run, model = result.get_output()
    assert best_run.info.run_id == parent.data.tags["automl.best_run_id"]
    assert best_run.data.metrics["AUC_weighted"] == pytest.approx(result.best_score)

    iris = load_iris(as_frame=True)
    assert (model.predict(iris.data) == iris.target).mean() > 0.9
    # the logged model loads and predicts in a fresh process
    code = (
        "import mlflow, sys; from sklearn.datasets import load_iris;"
        f"mlflow.set_tracking_uri('{result.tracking_uri}');"
        f"m = mlflow.pyfunc.load_model('{result.model_uri}');"
        "X = load_iris(as_frame=True).data; print(len(m.predict(X)));"
        "print(m.metadata.signature is not None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["150", "True"]
    # a model of this size keeps the input example (shown in the MLflow UI)
    assert _saved_model(result).saved_input_example_info is not None


def _saved_model(result):
    import mlflow
    from mlflow.models import Model

    mlflow.set_tracking_uri(result.tracking_uri)
    return Model.load(result.model_uri)


def test_a_model_past_the_size_limit_is_logged_with_its_signature_and_no_example(
    ray_local, store, monkeypatch
):
    from automl_runner.tracking import models

    monkeypatch.setattr(models, "EXAMPLE_MAX_MODEL_BYTES", 1)
    result = automl_runner.run(["data=iris", "automl.iterations=2", *NO_ENSEMBLES, *store])
    saved = _saved_model(result)
    assert saved.saved_input_example_info is None
    assert saved.signature is not None
    assert saved.signature.inputs.input_names() == list(load_iris(as_frame=True).data.columns)
    import mlflow

    iris = load_iris(as_frame=True).data
    assert len(mlflow.pyfunc.load_model(result.model_uri).predict(iris)) == 150


def test_model_bytes_is_the_size_of_the_pickle():
    import pickle

    from sklearn.ensemble import RandomForestClassifier

    from automl_runner.tracking.models import model_bytes

    X, y = load_breast_cancer(return_X_y=True)
    model = RandomForestClassifier(30, random_state=0).fit(X, y)
    assert model_bytes(model) == pytest.approx(len(pickle.dumps(model, protocol=5)), rel=0.01)


def test_failing_and_hanging_iterations_do_not_stop_the_experiment(ray_local, store):
    result = automl_runner.run(
        [
            "data=breast_cancer",
            BROKEN,
            SLEEPY,
            "automl.allowed_models=[Broken,Sleepy,LogisticRegression]",
            "automl.iterations=6",
            "automl.iteration_timeout_minutes=0.05",
            *NO_ENSEMBLES,
            *store,
        ]
    )
    statuses = {r.iteration: (r.candidate.family, r.status) for r in result.results}
    assert len(statuses) == 6
    by_family = {}
    for family, status in statuses.values():
        by_family.setdefault(family, set()).add(status)
    assert by_family["Broken"] == {"FAILED"}
    assert by_family["Sleepy"] == {"TIMEOUT"}
    assert by_family["LogisticRegression"] == {"COMPLETED"}
    parents, children = mlflow_runs(result.tracking_uri, result.experiment_id)
    runs = {c.data.tags["automl.status"]: c for c in children}
    assert runs["FAILED"].info.status == "FAILED" and runs["TIMEOUT"].info.status == "KILLED"
    client = MlflowClient(result.tracking_uri)
    tb = client.download_artifacts(runs["FAILED"].info.run_id, "traceback.txt")
    assert "RuntimeError: this estimator always fails" in Path(tb).read_text()
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["iterations_failed"] >= 1
    assert parents[0].data.metrics["iterations_timed_out"] >= 1
    assert result.best.candidate.family == "LogisticRegression"
    assert result.model_uri


def test_experiment_timeout_cancels_in_flight_and_bounds_the_whole_experiment(ray_local, store):
    """At the deadline the iterations in flight are cancelled (two slots, a 3 s family:
    some always are), and the search ends early enough for the ensembles, the refit of
    what they hold and the model's logging to end by the deadline; before, they came
    after it (4-5 s)."""
    budget = 20.0
    start = time.monotonic()
    result = automl_runner.run(
        [
            # 0.6 s a fit: 3 s an iteration, a refit of the stacking ensemble ~1 s
            SLOW.replace("task: classification", "task: classification, fixed: {seconds: 0.6}"),
            "automl.allowed_models=[Slow,LogisticRegression,DecisionTree]",
            "automl.iterations=1000",
            "automl.enable_early_stopping=false",
            f"automl.experiment_timeout_minutes={budget / 60}",
            # the explanation comes after the budget, under explain.timeout_minutes
            "automl.model_explainability=false",
            *store,
        ]
    )
    elapsed = time.monotonic() - start
    assert elapsed < budget + 0.5, elapsed
    statuses = [r.status for r in result.results]
    assert "CANCELLED" in statuses and "COMPLETED" in statuses
    parents, children = mlflow_runs(result.tracking_uri, result.experiment_id)
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["iterations_cancelled"] >= 1
    assert len(children) == len(statuses)
    kinds = [r.candidate.family for r in result.results if r.candidate.members]
    assert "StackEnsemble" in kinds
    # the stacking ensemble holds the best of each family, a slow one too: its refit
    # was kept time for
    slow = [r for r in result.results if r.candidate.family == "Slow"]
    assert slow and slow[0].status == "COMPLETED"
    assert result.model_uri
    run = parents[0].info
    assert (run.end_time - run.start_time) / 1000 < budget


def test_all_iterations_failing_is_one_clear_error_and_a_failed_parent(ray_local, store):
    with pytest.raises(NoModelError, match="no iteration completed"):
        automl_runner.run([BROKEN, "automl.allowed_models=[Broken]", "automl.iterations=2", *store])
    from automl_runner.tracking.connection import store_uri

    uri = store_uri(typed(store).tracking)[0]
    exp = MlflowClient(uri).get_experiment_by_name("automl-digits")
    parents, children = mlflow_runs(uri, exp.experiment_id)
    assert [p.info.status for p in parents] == ["FAILED"] and len(children) == 2


def test_csv_with_categories_missing_values_and_string_labels(ray_local, store, tmp_path):
    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 10, n).astype(float),
            "country": rng.choice(["France", "Spain", "Germany"], n),
            "card": rng.choice(["yes", "no"], n),
            "balance": rng.normal(50_000, 20_000, n),
        }
    )
    frame["Exited"] = np.where(
        (frame["country"] == "Germany") | (frame["tenure"] < 2), "left", "stayed"
    )
    frame.loc[::9, "balance"] = np.nan
    frame.loc[::11, "country"] = None
    path = tmp_path / "churn.csv"
    frame.to_csv(path, index=False)
    result = automl_runner.run(
        ["data=file", f"data.path={path}", "data.target=Exited", "automl.iterations=4", *store]
    )
    assert result.best_score > 0.9
    _, model = result.get_output()
    unseen = pd.DataFrame(
        {
            "tenure": [1.0, np.nan],
            "country": ["Atlantis", None],
            "card": ["maybe", "yes"],
            "balance": [np.nan, 10.0],
        }
    )
    assert set(model.predict(unseen)) <= {"left", "stayed"}
    import mlflow

    mlflow.set_tracking_uri(result.tracking_uri)
    assert len(mlflow.pyfunc.load_model(result.model_uri).predict(unseen)) == 2


def test_dates_in_a_csv_are_learned_and_the_logged_model_needs_no_automl_runner(
    ray_local, store, tmp_path
):
    # the label is whether the day is a weekend: nothing a one-hot of 400 distinct date
    # strings can learn, but the day of week says it exactly
    rng = np.random.default_rng(2)
    when = pd.Series(pd.date_range("2022-01-01 08:00", periods=400, freq="25h"))
    frame = pd.DataFrame(
        {"when": when.dt.strftime("%Y-%m-%d %H:%M:%S"), "noise": rng.normal(size=len(when))}
    )
    frame["day"] = np.where(when.dt.day_of_week >= 5, "weekend", "weekday")
    frame.loc[::50, "when"] = None
    path = tmp_path / "visits.csv"
    frame.to_csv(path, index=False)
    result = automl_runner.run(
        ["data=file", f"data.path={path}", "data.target=day", "automl.iterations=4"]
        + [*NO_ENSEMBLES, *store]
    )
    assert result.best_score > 0.95
    # the date step's code travels with the model: it loads where automl_runner cannot
    # be imported, and predicts dates, a missing one and one that does not parse
    code = (
        "import sys; sys.modules['automl_runner'] = None;"
        "import mlflow, pandas as pd;"
        f"mlflow.set_tracking_uri('{result.tracking_uri}');"
        f"m = mlflow.pyfunc.load_model('{result.model_uri}');"
        "X = pd.DataFrame({'when': ['2030-06-01 10:00:00', '2030-06-03 10:00:00', None, 'soon'],"
        " 'noise': [0.0, 0.0, 0.0, 0.0]});"
        "print(*m.predict(X))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    predicted = out.stdout.split()
    assert predicted[:2] == ["weekend", "weekday"]  # a Saturday, a Monday
    assert set(predicted) <= {"weekend", "weekday"} and len(predicted) == 4


def test_classes_with_fewer_rows_than_folds_are_searched_and_predicted(ray_local, store, tmp_path):
    # 5 folds; 'pair' has 2 rows and 'single' 1: some folds validate a class their
    # training rows lack, others validate without it
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    labels = np.where(y == 1, "benign", "malignant").astype(object)
    labels[:2], labels[2] = "pair", "single"
    frame = X.iloc[:, :6].assign(label=labels)
    path = tmp_path / "rare.csv"
    frame.to_csv(path, index=False)
    result = automl_runner.run(
        ["data=file", f"data.path={path}", "data.target=label", "automl.iterations=6", *store]
    )
    statuses = [r.status for r in result.results]
    assert statuses.count("COMPLETED") == len(statuses) and len(statuses) >= 6
    assert all(np.isfinite(r.mean("AUC_weighted")) for r in result.results)
    assert result.best_score > 0.9
    assert set(result.model.classes_) == {"benign", "malignant", "pair", "single"}
    assert result.model.predict_proba(frame.drop(columns="label")).shape == (len(frame), 4)


def test_csv_regression(ray_local, store, tmp_path):
    rng = np.random.default_rng(2)
    n = 200
    frame = pd.DataFrame(
        {
            "rooms": rng.integers(1, 6, n).astype(float),
            "district": rng.choice(["north", "south", "centre"], n),
        }
    )
    frame["price"] = (
        frame["rooms"] * 50
        + frame["district"].map({"north": 0, "south": 40, "centre": 120})
        + rng.normal(0, 5, n)
    )
    frame.loc[::13, "rooms"] = np.nan
    path = tmp_path / "homes.csv"
    frame.to_csv(path, index=False)
    result = automl_runner.run(
        [
            "data=file",
            f"data.path={path}",
            "data.target=price",
            "automl=regression",
            "automl.iterations=4",
            *store,
        ]
    )
    assert result.primary_metric == "r2_score" and result.best_score > 0.8
    parents, children = mlflow_runs(result.tracking_uri, result.experiment_id)
    assert {"spearman_correlation", "normalized_root_mean_squared_error"} <= set(
        children[0].data.metrics
    )


def test_seed_get_data_script_runs_unchanged(ray_local, store, tmp_path):
    from unit.test_data import SEED_GET_DATA

    path = tmp_path / "project" / "get_data.py"
    path.parent.mkdir()
    path.write_text(SEED_GET_DATA)
    result = automl_runner.run(
        ["data=script", f"data.path={path}", "automl.iterations=3", *NO_ENSEMBLES, *store]
    )
    parents, children = mlflow_runs(result.tracking_uri, result.experiment_id)
    assert len(children) == 3
    assert (
        MlflowClient(result.tracking_uri).get_experiment(result.experiment_id).name
        == "automl-project"
    )
    assert parents[0].data.params["data_summary.rows"] == "1787"


CHEAP = "automl.allowed_models=[LogisticRegression,KNN,DecisionTree,ExtremeRandomTrees]"


@pytest.mark.parametrize("large", [False, True])
def test_with_large_data_the_mlflow_store_opens_once_the_data_is_in_the_object_store(
    ray_local, store, monkeypatch, large
):
    """Small data: MLflow opens while Ray starts. Large data: after the put, so MLflow's
    memory does not add to the moment the data exists twice; every run is logged alike."""
    from automl_runner.experiment import setup

    events: list[str] = []
    open_tracker, init = setup.open_tracker, setup.RayExecutor.__init__

    def spy_open(*args, **kwargs):
        events.append("open store")
        return open_tracker(*args, **kwargs)

    def spy_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        events.append("data put")

    monkeypatch.setattr(setup, "open_tracker", spy_open)
    monkeypatch.setattr(setup.RayExecutor, "__init__", spy_init)
    # iris is 4.8 kB: "large" moves the threshold below it
    threshold = 1024 if large else setup.OPEN_TRACKER_EARLY_BELOW_BYTES
    monkeypatch.setattr(setup, "OPEN_TRACKER_EARLY_BELOW_BYTES", threshold)
    result = automl_runner.run(["data=iris", "automl.iterations=2", *NO_ENSEMBLES, *store])
    assert events == (["data put", "open store"] if large else ["open store", "data put"])
    parents, children = mlflow_runs(result.tracking_uri, result.experiment_id)
    assert len(parents) == 1 and len(children) == 2
    assert parents[0].data.metrics["iterations_completed"] == 2


def test_ensembles_are_extra_iterations_with_their_own_child_runs(ray_local, store):
    result = automl_runner.run(["data=breast_cancer", "automl.iterations=6", CHEAP, *store])
    _, children = mlflow_runs(result.tracking_uri, result.experiment_id)
    names = sorted(c.info.run_name for c in children)
    # 6 search iterations plus the two ensembles, numbered after them (here the voting
    # one's selection keeps several members: a voting ensemble of one is never built)
    assert len(children) == 8
    assert {"iteration-6-VotingEnsemble", "iteration-7-StackEnsemble"} <= set(names)
    ensembles = [c for c in children if c.data.tags["automl.kind"] == "ensemble"]
    for run in ensembles:
        members = [int(i) for i in run.data.params["ensemble.iterations"].split(",")]
        assert members and all(0 <= i < 6 for i in members)
        assert {f"AUC_weighted_fold_{k}" for k in range(5)} <= set(run.data.metrics)
    # the ensemble is best only if it scores best
    best = max(result.results, key=lambda r: r.mean("AUC_weighted"))
    assert result.best.mean("AUC_weighted") == best.mean("AUC_weighted")
    _, model = result.get_output()
    assert model.predict(load_breast_cancer(as_frame=True).data[:5]).shape == (5,)
    off = automl_runner.run(
        [
            "data=breast_cancer",
            "automl.iterations=3",
            "automl.enable_voting_ensemble=false",
            "automl.enable_stack_ensemble=false",
            CHEAP,
            *store,
        ]
    )
    assert len(off.results) == 3


def test_a_failing_ensemble_is_a_failed_iteration_and_the_experiment_goes_on(ray_local, store):
    # the Infinite family scores (accuracy) but no stacker can be fitted on its predictions
    result = automl_runner.run(
        [
            "data=iris",
            INFINITE,
            "automl.allowed_models=[Infinite,LogisticRegression]",
            "automl.primary_metric=accuracy",
            "automl.enable_voting_ensemble=false",
            "automl.iterations=4",
            *store,
        ]
    )
    parents, children = mlflow_runs(result.tracking_uri, result.experiment_id)
    assert parents[0].info.status == "FINISHED"
    stack = next(c for c in children if c.info.run_name == "iteration-4-StackEnsemble")
    assert stack.data.tags["automl.status"] == "FAILED"
    assert stack.data.tags["automl.kind"] == "ensemble"
    trace = MlflowClient(result.tracking_uri).download_artifacts(stack.info.run_id, "traceback.txt")
    assert "infinity" in Path(trace).read_text().lower()
    assert parents[0].data.metrics["iterations_ensembles"] == 1
    assert parents[0].data.metrics["iterations_completed"] == 4
    assert result.best.iteration < 4 and result.model is not None


@pytest.mark.parametrize("slots", [1, 2])
def test_the_ensembles_are_tasks_run_as_many_at_once_as_there_are_slots(
    ray_local, store, monkeypatch, slots
):
    from automl_runner.engine.ray_executor import RayExecutor
    from automl_runner.tracking.control import DriverChannel

    in_flight_at_submit = []
    submit = RayExecutor.submit_ensemble

    def spy(self, *args, **kwargs):
        in_flight_at_submit.append(self.in_flight)
        submit(self, *args, **kwargs)

    # what `automl-ctl status` is told runs while the ensembles are built
    told = []
    progress = DriverChannel.progress

    def listen(self, state, running, *args):
        if state == "ENSEMBLING" and running:
            told.append(dict(running))
        progress(self, state, running, *args)

    monkeypatch.setattr(RayExecutor, "submit_ensemble", spy)
    monkeypatch.setattr(DriverChannel, "progress", listen)
    started = time.time()
    result = automl_runner.run(
        [
            "data=breast_cancer",
            "automl.iterations=6",
            "automl.enable_early_stopping=false",
            f"automl.max_concurrent_iterations={slots}",
            CHEAP,
            *store,
        ]
    )
    # both ensembles were submitted: with 2 slots the second beside the first
    assert in_flight_at_submit == ([0, 1] if slots == 2 else [0, 0])
    ensembles = [r for r in result.results if r.candidate.members]
    assert [r.iteration for r in ensembles] == list(range(6, 6 + len(ensembles)))
    assert ensembles and all(r.status == "COMPLETED" and r.node for r in ensembles)
    # shown as running since they were submitted, not since the epoch
    assert told and all(
        "Ensemble" in pipeline and started <= since <= time.time()
        for running in told
        for pipeline, since in running.values()
    )


def test_a_used_up_search_space_ends_the_search_without_repeats(ray_local, store):
    """A tree narrowed to criterion x max_depth in 2..4 has 6 points, plus its portfolio
    default: 7 iterations, each a different pipeline, then the search ends and says why;
    the ensembles still follow."""
    tree = "search_space.estimators.decision_tree_classifier"
    result = automl_runner.run(
        [
            "data=iris",
            "automl.iterations=30",
            "automl.max_concurrent_iterations=2",
            "automl.allowed_models=[DecisionTree]",
            f"~{tree}.params.min_samples_leaf",
            f"{tree}.params.max_depth.high=4",
            *store,
        ]
    )
    search = [r for r in result.results if not r.candidate.members]
    assert len(search) == 7
    assert len({r.candidate.key() for r in search}) == 7
    assert all(r.status == "COMPLETED" for r in search)
    assert any(r.candidate.members for r in result.results)
    parent = MlflowClient(result.tracking_uri).get_run(result.parent_run_id)
    assert "search space has been tried" in parent.data.tags["automl.stopped_early"]
    assert parent.info.status == "FINISHED"
