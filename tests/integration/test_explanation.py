"""The explanation as part of an experiment: logged under the parent run, read back, contained."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import typed
from mlflow import MlflowClient

import automl_runner
from automl_runner.experiment import explain_finished_run

pytestmark = pytest.mark.slow

ARTIFACTS = {
    "explanation/summary.json",
    "explanation/shap_values.csv",
    "explanation/shap_values_engineered.csv",
    "explanation/rows.csv",
    "explanation/overall_importance.png",
    "explanation/per_class_importance.png",
    "explanation/summary_beeswarm.png",
}


def test_explanation_is_logged_and_read_back_in_a_fresh_process(ray_local, store):
    result = automl_runner.run(["data=wine", "automl.iterations=3", *store])
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    listed = {a.path for a in client.list_artifacts(result.parent_run_id, "explanation")}
    assert listed >= ARTIFACTS
    assert parent.data.tags["automl.explanation"] == "ok"
    top = parent.data.tags["automl.top_features"].split(", ")
    assert top[0] == result.explanation["overall_imp"][0]
    assert f"importance.{top[0]}" in parent.data.metrics
    code = (
        "import json, automl_runner, numpy as np;"
        f"sv, ev, osum, oimp, pcs, pci = automl_runner.retrieve_model_explanation('{result.best_run_id}', '{result.tracking_uri}');"
        "print(json.dumps({'classes': len(sv), 'shape': list(np.shape(sv[0])), 'ev': len(ev),"
        " 'oimp': oimp, 'osum': osum, 'pci': len(pci), 'pcs0': pcs[0]}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["classes"] == 3 and got["ev"] == 3 and got["pci"] == 3
    assert got["shape"] == [result.explanation["rows"], 13]
    assert got["oimp"] == result.explanation["overall_imp"]
    assert got["osum"] == sorted(got["osum"], reverse=True)
    assert got["pcs0"] == sorted(got["pcs0"], reverse=True)


def test_a_failing_explainer_leaves_a_note_and_the_experiment_succeeds(ray_local, store):
    # a linear explainer cannot explain a random forest
    result = automl_runner.run(
        [
            "data=iris",
            "automl.iterations=2",
            "automl.allowed_models=[RandomForest]",
            "explain.explainer=linear",
            *store,
        ]
    )
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and result.model_uri
    assert parent.data.tags["automl.explanation"].startswith("failed: ")
    assert client.download_artifacts(result.parent_run_id, "explanation/error.txt")
    assert result.explanation is None


def test_an_explanation_past_its_budget_is_stopped(ray_local, store):
    result = automl_runner.run(
        [
            "data=digits",
            "automl.iterations=1",
            "automl.allowed_models=[SVM]",
            "explain.timeout_minutes=0.02",
            "explain.kernel_nsamples=null",
            "explain.kernel_rows=100",
            *store,
        ]
    )
    parent = MlflowClient(result.tracking_uri).get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and result.model_uri
    assert parent.data.tags["automl.explanation"].startswith("timeout: explanation ran past")


def test_explain_only_explains_a_finished_run_again(ray_local, store):
    result = automl_runner.run(
        ["data=breast_cancer", "automl.iterations=2", "automl.model_explainability=false", *store]
    )
    client = MlflowClient(result.tracking_uri)
    assert "automl.explanation" not in client.get_run(result.parent_run_id).data.tags
    n_runs = len(client.search_runs([result.experiment_id]))
    cfg = typed(
        [
            f"explain.only={result.best_run_id}",
            "explain.explainer=kernel",
            "explain.kernel_nsamples=200",
            *store,
        ]
    )
    info = explain_finished_run(cfg, cfg.explain.only)
    assert info["explainer"] == "kernel" and info["classes"] == ["0", "1"]
    assert client.get_run(result.parent_run_id).data.tags["automl.explanation"] == "ok"
    # no search ran: no new runs
    assert len(client.search_runs([result.experiment_id])) == n_runs
    sv, ev, *_ = automl_runner.retrieve_model_explanation(result.parent_run_id, result.tracking_uri)
    assert np.shape(sv) == (2, info["rows"], 30)


def test_a_winning_ensemble_is_explained_itself_not_its_leading_member(ray_local, store):
    """Seeded, iris with these families ends with a VotingEnsemble best: the explanation
    read back from the store is that ensemble's, adds up to its logged model's
    probabilities on the logged rows, and keeps each member's importance table."""
    import pandas as pd

    from automl_runner.tracking.models import load_model

    result = automl_runner.run(
        [
            "data=iris",
            "automl.iterations=6",
            "automl.allowed_models=[RandomForest,LogisticRegression,KNN]",
            "explain.kernel_nsamples=200",
            *store,
        ]
    )
    client = MlflowClient(result.tracking_uri)
    best = client.get_run(result.best_run_id)
    assert best.data.tags["automl.kind"] == "ensemble", best.data.tags["automl.pipeline"]
    members = [f"iteration_{i}" for i in best.data.params["ensemble.iterations"].split(",")]
    parent = client.get_run(result.parent_run_id)
    explained = parent.data.tags["automl.explained_model"]
    assert explained == f"VotingClassifier of {', '.join(members)}"
    local = client.download_artifacts(result.parent_run_id, "explanation/summary.json")
    summary = json.loads(Path(local).read_text())
    assert summary["model"] == explained and summary["output"] == "probability"
    assert [m["name"] for m in summary["members"]] == members
    weights = [m["coefficients"][0][0] for m in summary["members"]]
    assert abs(sum(weights) - 1) < 1e-3
    for name in members:
        table = pd.read_csv(
            client.download_artifacts(
                result.parent_run_id,
                f"explanation/members/{name.removeprefix('iteration_')}/importance.csv",
            )
        )
        assert list(table.columns[:2]) == ["feature", "overall"] and len(table) == 4
    # the stored values add up to the logged model's probabilities for the stored rows
    sv, ev, *_ = automl_runner.retrieve_model_explanation(result.parent_run_id, result.tracking_uri)
    rows = pd.read_csv(client.download_artifacts(result.parent_run_id, "explanation/rows.csv"))
    proba = load_model(result.tracking_uri, result.model_uri).predict_proba(rows)
    added = np.stack([np.asarray(v).sum(axis=1) + e for v, e in zip(sv, ev, strict=True)], axis=1)
    np.testing.assert_allclose(added, proba, atol=1e-6)


def _refit(executor, target: str, name: str):
    from automl_runner.records import Candidate

    return executor.refit(
        Candidate(
            preprocessor="standard_scaler",
            preprocessor_target="sklearn.preprocessing.StandardScaler",
            preprocessor_params={},
            estimator=name,
            estimator_target=target,
            estimator_params={},
            description=f"Standardize {name}",
            family=name,
        )
    )


def test_an_explanation_is_started_the_driver_goes_on_and_collects_or_cancels_it(ray_local):
    """executor.explain only starts the task (the driver logs and evaluates the model
    meanwhile); result() collects it. cancel() stops one still running: its result then
    fails at once instead of running on to its end or its timeout."""
    import time

    from automl_runner.config.schema import AutoMLConfig, BuiltinData, ExplainConfig
    from automl_runner.data import load
    from automl_runner.engine.ray_executor import RayExecutor
    from automl_runner.experiment.explanation import explainer_settings
    from automl_runner.experiment.setup import prepare

    automl = AutoMLConfig(n_cross_validations=2)
    iris = RayExecutor(prepare(load(BuiltinData(name="iris"), automl), automl), timeout_s=600)
    model = _refit(iris, "sklearn.linear_model.LogisticRegression", "lr")
    quick = explainer_settings(ExplainConfig(explainer="kernel", kernel_nsamples=50, rows=10))
    started = time.monotonic()
    explaining = iris.explain(model, quick, 600)
    assert time.monotonic() - started < 1.0
    explanation, rows = explaining.result()
    assert explanation.shap_engineered.shape[1:] == (10, 4) and rows.shape == (10, 4)
    explaining.cancel()  # done already: nothing to stop, and no error

    digits = RayExecutor(prepare(load(BuiltinData(name="digits"), automl), automl), timeout_s=600)
    model = _refit(digits, "sklearn.neighbors.KNeighborsClassifier", "knn")
    # kNN through the kernel explainer, SHAP's own coalitions, 100 rows: minutes of work
    slow = explainer_settings(
        ExplainConfig(explainer="kernel", kernel_nsamples=None, kernel_rows=100)
    )
    explaining = digits.explain(model, slow, 600)
    time.sleep(1.0)
    explaining.cancel()
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        explaining.result()
    assert not isinstance(caught.value, TimeoutError)
    assert time.monotonic() - started < 15
    assert ray_local.get(ray_local.put(1)) == 1  # the driver's Ray goes on
