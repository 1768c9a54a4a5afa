"""What a reviewer sees of an experiment in the MLflow UI, read the way the UI reads it:
over the REST API of `mlflow ui` started on the run's store (issue 26)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

from system.loopback import MlflowServer
from system.test_cli import cli


def _get(url: str, endpoint: str, **query: str) -> dict:
    address = f"{url}{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(address, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.server
@pytest.mark.slow
def test_the_run_page_shows_description_datasets_registered_model_and_evaluation(tmp_path):
    out = cli(
        [
            "data=breast_cancer",
            "automl.iterations=4",
            "automl.test_size=0.2",
            "tracking.register_model=cancer-clf",
            "explain.rows=20",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    parent_id = next(
        line.split()[2] for line in out.stdout.splitlines() if line.startswith("MLflow run:")
    )
    store = f"sqlite:///{tmp_path / 'outputs' / 'mlflow' / 'mlflow.db'}"
    ui = MlflowServer(tmp_path / "ui", backend=store)
    ui.root.mkdir()
    ui.start()
    try:
        run = _get(ui.url, "/api/2.0/mlflow/runs/get", run_id=parent_id)["run"]
        alias = _get(
            ui.url, "/api/2.0/mlflow/registered-models/alias", name="cancer-clf", alias="champion"
        )["model_version"]
        listed = _get(ui.url, "/api/2.0/mlflow/artifacts/list", run_id=parent_id)
        evaluation = _get(
            ui.url, "/api/2.0/mlflow/artifacts/list", run_id=parent_id, path="evaluation"
        )
    finally:
        ui.stop()
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    description = tags["mlflow.note.content"]
    # the story: the winner, its CV and test scores, the leaderboard, the guardrails,
    # the top features, and how to load the model
    best_pipeline = tags["automl.best_pipeline"]
    assert best_pipeline in description.splitlines()[0]
    assert "**AUC_weighted** (cross-validation)" in description
    assert "**AUC_weighted** (test set)" in description
    assert "### Leaderboard (top 6 of 6)" in description
    assert "### Data guardrails" in description and "### Top features" in description
    assert f'mlflow.sklearn.load_model("{tags["automl.best_model_uri"]}")' in description
    inputs = run["inputs"]["dataset_inputs"]
    contexts = {i["tags"][0]["value"]: i["dataset"] for i in inputs}
    assert set(contexts) == {"training", "test"}
    assert all(d["digest"] and d["schema"] for d in contexts.values())
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert "test_AUC_weighted" in metrics
    # the registered model is the run's best model, under the alias champion
    assert alias["source"] == tags["automl.best_model_uri"]
    assert tags["automl.registered_model"] == f"cancer-clf/{alias['version']}"
    artifacts = {f["path"] for f in listed["files"]}
    assert {"evaluation", "explanation", "guardrails.json", "leaderboard.csv"} <= artifacts
    charts = {f["path"] for f in evaluation["files"]}
    assert {
        "evaluation/confusion_matrix.png",
        "evaluation/roc.png",
        "evaluation/precision_recall.png",
        "evaluation/calibration.png",
        "evaluation/metric_by_iteration.png",
        "evaluation/test_predictions.csv",
    } <= charts
