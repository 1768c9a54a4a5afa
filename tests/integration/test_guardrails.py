"""The data guardrails of whole experiments (serial executor), read back from a real
MLflow store: guardrails.json on the parent run, the alerts as its tags, the console
table before the search."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import GUARDRAILS, NO_ENSEMBLES
from mlflow import MlflowClient

import automl_runner
from automl_runner.experiment import run_experiment

pytestmark = pytest.mark.slow


def _run(overrides: list[str]):
    overrides = [*overrides, "automl.iterations=2", "automl.model_explainability=false"]
    return run_experiment(automl_runner.compose(overrides), overrides, serial=True)


def _guardrails(result, tmp_path: Path) -> tuple[dict, dict[str, str]]:
    """(guardrails.json, the parent run's tags) as the store holds them."""
    client = MlflowClient(result.tracking_uri)
    path = client.download_artifacts(result.parent_run_id, "guardrails.json", str(tmp_path))
    return json.loads(Path(path).read_text()), client.get_run(result.parent_run_id).data.tags


def test_every_guardrail_has_a_status_in_the_store_and_on_the_console(store, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="automl_runner")
    result = _run(["data=iris", *NO_ENSEMBLES, *store])
    logged, tags = _guardrails(result, tmp_path)
    checks = {c["name"]: c for c in logged["checks"]}
    assert list(checks) == GUARDRAILS
    assert all(c["status"] in ("PASSED", "DONE") and c["detail"] for c in checks.values())
    assert checks["validation_split"]["status"] == "DONE"
    assert 0 < logged["seconds"] < 1
    # iris raises no alert: no guardrail tag
    assert not [k for k in tags if k.startswith("automl.guardrail.")]
    # the table comes before the search's
    text = caplog.text
    assert "DATA GUARDRAILS" in text
    assert text.index("leakage            PASSED") < text.index("ITERATION   PIPELINE")


def test_alerts_are_tags_of_the_parent_run_and_the_experiment_goes_on(store, tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    y = rng.choice(["stay", "leave"], n)
    frame = pd.DataFrame(
        {
            "CustomerId": np.arange(15_000_000, 15_000_000 + n),
            "balance": rng.normal(1000, 300, n) + (y == "leave") * 200,
            "closed_account": np.where(y == "leave", "yes", "no"),
            "Exited": y,
        }
    )
    path = tmp_path / "churn.csv"
    frame.to_csv(path, index=False)
    result = _run(["data=file", f"data.path={path}", "data.target=Exited", *NO_ENSEMBLES, *store])
    assert result.status == "FINISHED" and result.best is not None
    logged, tags = _guardrails(result, tmp_path)
    statuses = {c["name"]: c["status"] for c in logged["checks"]}
    assert statuses["id_columns"] == statuses["leakage"] == "ALERTED"
    assert tags["automl.guardrail.id_columns"].startswith(
        "ALERTED: CustomerId (integers in row order) unique per row"
    )
    assert tags["automl.guardrail.leakage"].startswith(
        "ALERTED: closed_account (1.000) alone predict(s) the target"
    )
    alerted = {
        k.removeprefix("automl.guardrail.") for k in tags if k.startswith("automl.guardrail.")
    }
    assert alerted == {n for n, s in statuses.items() if s == "ALERTED"}


def test_guardrails_off_runs_and_logs_none(store, tmp_path):
    result = _run(["data=iris", "automl.guardrails=off", *NO_ENSEMBLES, *store])
    client = MlflowClient(result.tracking_uri)
    assert "guardrails.json" not in {a.path for a in client.list_artifacts(result.parent_run_id)}
