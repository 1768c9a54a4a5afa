"""The best model on rows the search never saw, and its charts, read back from a real
MLflow store after real experiments on a local Ray (experiment/evaluation.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import INFINITE, NO_ENSEMBLES, typed
from mlflow import MlflowClient
from sklearn.datasets import load_breast_cancer, load_diabetes

import automl_runner
from automl_runner.data import load
from automl_runner.metrics import Fold, class_scores, score_fold
from automl_runner.tracking.models import load_model

pytestmark = pytest.mark.slow


@pytest.fixture
def store(store):
    return [*store, "automl.model_explainability=false"]


def _artifacts(client: MlflowClient, run_id: str) -> set[str]:
    return {Path(a.path).name for a in client.list_artifacts(run_id, "evaluation")}


def test_test_scores_are_a_fresh_scoring_of_the_logged_model_on_the_held_out_rows(
    ray_local, store, tmp_path
):
    overrides = ["data=breast_cancer", "automl.iterations=4", "automl.test_size=0.25", *store]
    result = automl_runner.run(overrides)
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    best_run = client.get_run(result.best_run_id)
    # the held-out rows, as the runner chose them (seeded), never in the search
    cfg = typed(overrides)
    ds = load(cfg.data, cfg.automl)
    assert len(ds.y_test) == 143 and ds.n_rows == 569 - 143
    assert parent.data.params["data_summary.test_rows"] == "143"
    model = load_model(result.tracking_uri, parent.data.tags["automl.best_model_uri"])
    fold = Fold(
        ds.y_test,
        model.predict(ds.X_test),
        class_scores(model, ds.X_test),
        np.array([0, 1]),
        None,
        0.0,
    )
    fresh = score_fold("classification", fold)
    assert set(fresh) == {
        "AUC_weighted",
        "accuracy",
        "average_precision_score_weighted",
        "norm_macro_recall",
        "precision_score_weighted",
    }
    for name, value in fresh.items():
        assert parent.data.metrics[f"test_{name}"] == pytest.approx(value, abs=1e-12)
        assert best_run.data.metrics[f"test_{name}"] == pytest.approx(value, abs=1e-12)
    assert parent.data.tags["automl.evaluated_on"] == "test"
    assert _artifacts(client, parent.info.run_id) == {
        "confusion_matrix.png",
        "roc.png",
        "precision_recall.png",
        "calibration.png",
        "metric_by_iteration.png",
        "test_predictions.csv",
    }
    # the confusion matrix's cells: the test predictions, which sum to the test rows
    predictions = pd.read_csv(
        client.download_artifacts(
            parent.info.run_id, "evaluation/test_predictions.csv", str(tmp_path)
        )
    )
    matrix = pd.crosstab(predictions["y_true"], predictions["y_pred"])
    assert int(matrix.to_numpy().sum()) == 143
    assert (predictions["y_true"].to_numpy() == ds.y_test).all()
    assert (predictions["y_pred"].to_numpy() == model.predict(ds.X_test)).all()
    # the leaderboard's costs: a fold's fit, predicting 1,000 rows, the pickled model
    board = pd.read_csv(
        client.download_artifacts(parent.info.run_id, "leaderboard.csv", str(tmp_path))
    )
    searched = board[~board["pipeline"].str.contains("Ensemble")]
    assert (searched["fit_seconds"] > 0).all() and (searched["model_bytes"] > 1000).all()
    assert (searched["predict_seconds_per_1000_rows"] > 0).all()
    first = searched.iloc[0]
    child = client.get_run(first["run_id"]).data.metrics
    assert child["model_bytes"] == first["model_bytes"]
    assert child["fit_seconds"] == pytest.approx(first["fit_seconds"], abs=1e-3)
    # the Python API's result is unchanged, and carries the scores
    run, fitted = result.get_output()
    assert run.info.run_id == result.best_run_id and fitted is not None
    assert result.test_scores["test_AUC_weighted"] == pytest.approx(fresh["AUC_weighted"])


def test_a_test_file_is_scored_and_a_regression_gets_its_charts(ray_local, store, tmp_path):
    frame = load_diabetes(as_frame=True).frame
    frame.iloc[:350].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[350:].to_csv(tmp_path / "test.csv", index=False)
    result = automl_runner.run(
        [
            "data=file",
            f"data.path={tmp_path / 'train.csv'}",
            f"data.test_path={tmp_path / 'test.csv'}",
            "data.target=target",
            "automl=regression",
            "automl.iterations=3",
            *NO_ENSEMBLES,
            *store,
        ]
    )
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.data.params["data_summary.test_rows"] == str(len(frame) - 350)
    assert "test_r2_score" in parent.data.metrics
    assert _artifacts(client, parent.info.run_id) == {
        "predicted_vs_true.png",
        "residuals.png",
        "metric_by_iteration.png",
        "test_predictions.csv",
    }


def test_without_a_test_set_the_charts_come_from_the_out_of_fold_predictions(ray_local, store):
    result = automl_runner.run(["data=iris", "automl.iterations=3", *NO_ENSEMBLES, *store])
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["automl.evaluated_on"] == "out-of-fold"
    assert not any(k.startswith("test_") for k in parent.data.metrics)
    assert result.test_scores == {}
    assert _artifacts(client, parent.info.run_id) == {
        "confusion_matrix.png",
        "roc.png",
        "precision_recall.png",
        "calibration.png",
        "metric_by_iteration.png",
    }


def test_a_best_model_with_scores_that_are_not_finite_gets_its_label_charts(ray_local, store):
    result = automl_runner.run(
        [
            "data=iris",
            INFINITE,
            "automl.allowed_models=[Infinite]",
            "automl.primary_metric=accuracy",
            "automl.iterations=2",
            *NO_ENSEMBLES,
            *store,
        ]
    )
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and result.best.candidate.family == "Infinite"
    assert _artifacts(client, parent.info.run_id) == {
        "confusion_matrix.png",
        "metric_by_iteration.png",
    }


def test_a_script_test_set_and_test_size_together_are_one_line(tmp_path):
    script = tmp_path / "data.py"
    script.write_text(
        "from sklearn.datasets import load_iris\n"
        "def get_data():\n"
        "    X, y = load_iris(return_X_y=True)\n"
        "    return {'X': X[:100], 'y': y[:100], 'X_test': X[100:], 'y_test': y[100:]}\n"
    )
    cfg = typed(["data=script", f"data.path={script}", "automl.test_size=0.2"])
    with pytest.raises(automl_runner.UserError) as info:
        load(cfg.data, cfg.automl)
    assert str(info.value).startswith("automl.test_size=0.2: data.path=")
    assert "gives a test set already" in str(info.value)
    ds = load(typed(["data=script", f"data.path={script}"]).data, cfg.automl.__class__())
    assert ds.n_rows == 100 and len(ds.y_test) == 50


def test_test_size_is_stratified_and_seeded():
    cfg = typed(["data=breast_cancer", "automl.test_size=0.2"])
    a, b = load(cfg.data, cfg.automl), load(cfg.data, cfg.automl)
    assert (a.y_test == b.y_test).all()
    y = load_breast_cancer().target
    assert abs(a.y_test.mean() - y.mean()) < 0.01
