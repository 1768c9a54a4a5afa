"""Explanations in MLflow: written as tables, JSON and plots under the parent run, read back.

Artifacts (under ``explanation/``): ``summary.json`` (expected values, overall and
per-class importance, in raw columns and in engineered features), ``shap_values.csv`` and
``shap_values_engineered.csv`` (one row per explained row and class), ``rows.csv`` (the
raw rows explained), and the plots ``overall_importance.png``,
``per_class_importance.png`` and ``summary_beeswarm.png``. They are those of the model the
user gets; for an ensemble, each member's importance table is kept under
``members/<iteration>/importance.csv``, and ``summary.json`` lists the members with their
explainer and their part in the ensemble's values.
"""

from __future__ import annotations

import json
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..worker.explain import Explanation, Member
from . import schema

FOLDER = schema.EXPLANATION_FOLDER
# how many of the top features become metrics and the tag TOP_FEATURES
TOP_FEATURES = 10


def summary(e: Explanation) -> dict[str, Any]:
    overall_summary, overall_imp = e.overall(raw=True)
    per_class_summary, per_class_imp = e.per_class(raw=True)
    eng_summary, eng_imp = e.overall(raw=False)
    return {
        "model": e.model,
        "explainer": e.explainer,
        "output": e.output,
        "classes": e.classes,
        "rows": int(e.shap_engineered.shape[1]),
        "seconds": round(e.seconds, 3),
        "notes": e.notes,
        "expected_values": [float(x) for x in e.expected],
        "overall_summary": overall_summary,
        "overall_imp": overall_imp,
        "per_class_summary": per_class_summary,
        "per_class_imp": per_class_imp,
        "engineered": {
            "overall_summary": eng_summary,
            "overall_imp": eng_imp,
            "feature_source": dict(zip(e.engineered_names, e.source, strict=True)),
        },
        "members": [_member_summary(m) for m in e.members],
    }


def _member_summary(m: Member) -> dict[str, Any]:
    """What a member is and how it enters the ensemble's values: the ensemble's output is
    the sum over members of `coefficients` @ the member's `output` (+ a constant)."""
    e = m.explanation
    return {
        "name": m.name,
        "model": e.model,
        "explainer": e.explainer,
        "output": e.output,
        "seconds": round(e.seconds, 3),
        "coefficients": np.round(m.coefficients, 6).tolist(),
        "expected_values": [float(x) for x in e.expected],
        "overall_imp": e.overall(raw=True)[1][:TOP_FEATURES],
        "notes": e.notes,
    }


def importance_table(e: Explanation) -> pd.DataFrame:
    """Mean |SHAP value| per user column: overall (summed over classes) and per class,
    most important first."""
    raw = np.abs(e.shap_raw).mean(axis=1)  # (outputs, columns)
    table = pd.DataFrame({"feature": e.raw_names, "overall": raw.sum(axis=0)})
    for k, label in enumerate(e.classes or []):
        table[f"class {label}"] = raw[k]
    return table.sort_values("overall", ascending=False, kind="stable")


def _log_members(e: Explanation, folder: Path) -> None:
    for m in e.members:
        where = folder / schema.MEMBERS_FOLDER / m.name.removeprefix("iteration_")
        where.mkdir(parents=True)
        importance_table(m.explanation).to_csv(where / "importance.csv", index=False)


def _long(values: np.ndarray, names: list[str], classes: list[str] | None) -> pd.DataFrame:
    frames = []
    for k in range(values.shape[0]):
        frame = pd.DataFrame(values[k], columns=names)
        frame.insert(0, "row", np.arange(values.shape[1]))
        if classes is not None:
            frame.insert(1, "class", classes[k])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def log_explanation(client: Any, run_id: str, e: Explanation, rows: Any) -> dict[str, Any]:
    """Write the explanation under the run; returns the summary."""
    from mlflow.entities import Metric, RunTag

    info = summary(e)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / FOLDER
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps(info, indent=2))
        _long(e.shap_raw, e.raw_names, e.classes).to_csv(folder / "shap_values.csv", index=False)
        _long(e.shap_engineered, e.engineered_names, e.classes).to_csv(
            folder / "shap_values_engineered.csv", index=False
        )
        (
            rows
            if isinstance(rows, pd.DataFrame)
            else pd.DataFrame(np.asarray(rows), columns=e.raw_names)
        ).to_csv(folder / "rows.csv", index=False)
        _plots(e, rows, folder)
        _log_members(e, folder)
        client.log_artifacts(run_id, str(folder), FOLDER)
    top = list(zip(info["overall_imp"], info["overall_summary"], strict=True))[:TOP_FEATURES]
    metrics = [
        Metric(f"{schema.IMPORTANCE_METRIC}{_metric_name(name)}", value, 0, 0)
        for name, value in top
    ]
    tags = [
        RunTag(schema.EXPLANATION, "ok"),
        RunTag(schema.EXPLAINER, e.explainer),
        RunTag(schema.EXPLAINED_MODEL, e.model[:5000]),
        RunTag(schema.TOP_FEATURES, ", ".join(name for name, _ in top)),
    ]
    client.log_batch(run_id, metrics=metrics, tags=tags)
    return info


def _metric_name(name: str) -> str:
    # MLflow metric names: letters, digits, _ - . / and space
    return re.sub(r"[^\w\-./ ]", "_", name)[:200]


def _plots(e: Explanation, rows: Any, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, imp_names = e.overall(raw=True)
    shown = min(len(values), 20)
    fig, ax = plt.subplots(figsize=(8, 0.35 * shown + 1.5))
    ax.barh(imp_names[:shown][::-1], values[:shown][::-1], color="#1f77b4")
    ax.set_xlabel(f"mean |SHAP value| ({e.output}{', summed over classes' if e.classes else ''})")
    ax.set_title(f"Overall feature importance ({e.explainer} explainer)")
    fig.tight_layout()
    fig.savefig(folder / "overall_importance.png", dpi=110)
    plt.close(fig)

    raw = e.shap_raw
    if e.classes is not None:
        names_idx = [e.raw_names.index(n) for n in imp_names[:shown]]
        per_class = np.abs(raw).mean(axis=1)[:, names_idx]  # (classes, shown)
        fig, ax = plt.subplots(figsize=(8, 0.35 * shown + 1.5))
        left = np.zeros(shown)
        cmap = plt.get_cmap("tab20")
        for k, label in enumerate(e.classes):
            ax.barh(
                imp_names[:shown][::-1],
                per_class[k][::-1],
                left=left[::-1],
                label=str(label),
                color=cmap(k % 20),
            )
            left += per_class[k]
        ax.set_xlabel(f"mean |SHAP value| ({e.output}) per class")
        ax.set_title("Feature importance by class")
        ax.legend(fontsize="small", loc="lower right")
        fig.tight_layout()
        fig.savefig(folder / "per_class_importance.png", dpi=110)
        plt.close(fig)

    import shap

    # beeswarm of each row's explanation for its own predicted class (or the regression output)
    if e.classes is not None:
        out = raw.sum(axis=2) + e.expected[:, None]
        chosen = out.argmax(axis=0)
        values_2d = raw[chosen, np.arange(raw.shape[1])]
    else:
        values_2d = raw[0]
    frame = (
        rows
        if isinstance(rows, pd.DataFrame)
        else pd.DataFrame(np.asarray(rows), columns=e.raw_names)
    )
    numeric = frame.apply(
        lambda s: s if pd.api.types.is_numeric_dtype(s) else s.astype("category").cat.codes
    )
    plt.figure()
    with warnings.catch_warnings():
        # numpy's "All-NaN slice encountered" for a column with no value (its colour
        # scale): the data check named that column on the console already
        warnings.simplefilter("ignore", RuntimeWarning)
        shap.summary_plot(
            values_2d,
            numeric.to_numpy(dtype=float),
            feature_names=e.raw_names,
            show=False,
            max_display=20,
        )
    plt.title("SHAP values per row" + (" (each row's predicted class)" if e.classes else ""))
    plt.tight_layout()
    plt.savefig(folder / "summary_beeswarm.png", dpi=110)
    plt.close("all")


def log_failure(client: Any, run_id: str, status: str, message: str) -> None:
    """Leave a clear note on the run: the experiment itself still succeeds."""
    client.set_tag(run_id, schema.EXPLANATION, f"{status}: {message}"[:5000])
    client.log_text(run_id, message + "\n", f"{FOLDER}/error.txt")


def retrieve_model_explanation(
    run_or_run_id: Any, tracking_uri: str | None = None
) -> tuple[
    Any, list[float], list[float], list[str], list[list[float]] | None, list[list[str]] | None
]:
    """The seed's six outputs from MLflow, for a parent run or any of its iteration runs.

    Returns (shap_values, expected_values, overall_summary, overall_imp, per_class_summary,
    per_class_imp). shap_values is a list of (rows, columns) arrays, one per class, for
    classification and one (rows, columns) array for regression, in raw columns.
    """
    import os

    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri)
    run_id = run_or_run_id if isinstance(run_or_run_id, str) else run_or_run_id.info.run_id
    run = client.get_run(run_id)
    parent = run.data.tags.get(schema.PARENT)
    if parent:
        run_id = parent
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, FOLDER, tmp))
        except Exception as ex:
            note = client.get_run(run_id).data.tags.get(schema.EXPLANATION, "none logged")
            raise UserError(f"run {run_id}: has no explanation ({note})") from ex
        info = json.loads((local / "summary.json").read_text())
        table = pd.read_csv(local / "shap_values.csv")
    features = [c for c in table.columns if c not in ("row", "class")]
    if info["classes"] is None:
        shap_values: Any = table[features].to_numpy()
    else:
        labels = table["class"].astype(str)
        shap_values = [table.loc[labels == str(c), features].to_numpy() for c in info["classes"]]
    return (
        shap_values,
        info["expected_values"],
        info["overall_summary"],
        info["overall_imp"],
        info["per_class_summary"],
        info["per_class_imp"],
    )
