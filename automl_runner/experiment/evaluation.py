"""The best model evaluated, after its refit: every metric of the task on the test set
(rows the search never saw: ``automl.test_size``, a script's ``X_test``/``y_test``,
``data.test_path``), its test predictions, and the charts Azure's run page shows, under
``evaluation/`` in the parent run.

The charts are drawn from the test set when there is one, else from the best
iteration's out-of-fold predictions (the rows each fold validated on): classification
gets a confusion matrix, ROC and precision-recall curves per class and a calibration
curve; regression predicted against true and the residuals; every experiment the primary
metric of each iteration in the order they finished, with the running best (the seed's
RunDetails chart). scikit-learn's ``*Display`` classes draw them.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import console
from ..data import Dataset
from ..metrics import METRICS, Fold, class_scores, score_fold
from ..records import COMPLETED, IterationResult, PreparedData
from ..tracking import schema
from ..tracking.store import Tracker

log = logging.getLogger(__name__)

# at most this many classes get a curve each (the rest would be unreadable)
MAX_CURVES = 10


@dataclass
class Predictions:
    """What a chart needs: the true target, the predictions, the class scores."""

    y_true: np.ndarray
    y_pred: np.ndarray
    # (n, classes) for classification; None for regression
    y_score: np.ndarray | None
    # "test" or "out-of-fold"
    source: str


def evaluate(
    tracker: Tracker,
    model: Any,
    dataset: Dataset,
    data: PreparedData,
    best: IterationResult,
    best_run_id: str,
    results: list[IterationResult],
) -> dict[str, float]:
    """Score `model` on the test set (if any), draw the charts, log both; the test scores."""
    started = time.monotonic()
    scores: dict[str, float] = {}
    predictions = None
    if dataset.X_test is not None and dataset.y_test is not None:
        predictions = _predict(model, dataset.X_test, dataset.y_test, data)
        fold = Fold(
            predictions.y_true,
            predictions.y_pred,
            predictions.y_score,
            data.classes,
            None,
            data.y_range,
        )
        scores = {schema.test_metric(k): v for k, v in score_fold(data.task, fold).items()}
        tracker.log_scores(scores, best_run_id)
        console.log.info(
            "test %s:  %s on %d held-out rows",
            data.primary_metric,
            console.score(scores[schema.test_metric(data.primary_metric)]),
            len(predictions.y_true),
        )
    elif best.oof is not None:
        predictions = _out_of_fold(best, data)
    import matplotlib

    # files only: no window, whatever backend the host would pick
    matplotlib.use("Agg")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if predictions is not None:
            _charts(predictions, data, folder)
            if predictions.source == "test":
                _predictions_frame(predictions, data).to_csv(
                    folder / Path(schema.TEST_PREDICTIONS_ARTIFACT).name, index=False
                )
        _iterations_chart(results, data.primary_metric, folder / "metric_by_iteration.png")
        charts = len(list(folder.glob("*.png")))
        tracker.log_folder(folder, schema.EVALUATION_FOLDER)
    source = predictions.source if predictions is not None else "none"
    tracker.set_tags({schema.EVALUATED_ON: source})
    console.log.info(
        "evaluation:      %d charts of the best model (%s predictions), %.1f s; in %s/",
        charts,
        source,
        time.monotonic() - started,
        schema.EVALUATION_FOLDER,
    )
    return scores


def _predict(model: Any, X: Any, y: np.ndarray, data: PreparedData) -> Predictions:
    y_pred = np.asarray(model.predict(X))
    y_score = class_scores(model, X) if data.task == "classification" else None
    return Predictions(np.asarray(y), y_pred, y_score, "test")


def _out_of_fold(best: IterationResult, data: PreparedData) -> Predictions:
    rows = data.oof_rows()
    target = data.y_valid if data.y_valid is not None else data.y
    y_true = np.asarray(target)[rows]
    oof = np.asarray(best.oof)
    if data.task == "classification":
        assert data.classes is not None
        return Predictions(y_true, data.classes[np.argmax(oof, axis=1)], oof, "out-of-fold")
    return Predictions(y_true, oof, None, "out-of-fold")


def _predictions_frame(p: Predictions, data: PreparedData) -> pd.DataFrame:
    frame = pd.DataFrame({"y_true": p.y_true, "y_pred": p.y_pred})
    if p.y_score is not None and data.classes is not None:
        for k, c in enumerate(data.classes):
            frame[f"score_{c}"] = p.y_score[:, k]
    return frame


# --- the charts -----------------------------------------------------------------------------
def _charts(p: Predictions, data: PreparedData, folder: Path) -> None:
    if data.task == "classification":
        _classification_charts(p, data, folder)
    else:
        _regression_charts(p, folder)


def _titled(ax: Any, title: str, p: Predictions) -> None:
    ax.set_title(f"{title} ({p.source}, {len(p.y_true)} rows)")


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _classification_charts(p: Predictions, data: PreparedData, folder: Path) -> None:
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    assert data.classes is not None and p.y_score is not None
    classes = data.classes
    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay.from_predictions(
        p.y_true, p.y_pred, labels=classes, ax=ax, colorbar=False, xticks_rotation=45
    )
    _titled(ax, "confusion matrix", p)
    _save(fig, folder / "confusion_matrix.png")
    if not np.all(np.isfinite(p.y_score)):
        # a model whose scores are not numbers to rank still has its labels charted
        log.warning(
            "evaluation: the best model's class scores are not all finite; the ROC, "
            "precision-recall and calibration charts are not drawn"
        )
        return
    # one-vs-rest per class; binary: the positive class only
    shown = [1] if len(classes) == 2 else list(range(min(len(classes), MAX_CURVES)))
    probabilities = bool(np.all((p.y_score >= 0) & (p.y_score <= 1)))
    charts: list[tuple[str, Any]] = [
        ("roc", RocCurveDisplay),
        ("precision_recall", PrecisionRecallDisplay),
    ]
    if probabilities:
        charts.append(("calibration", CalibrationDisplay))
    for name, display in charts:
        fig, ax = plt.subplots(figsize=(6, 5))
        for k in shown:
            positive = p.y_true == classes[k]
            if positive.all() or not positive.any():
                continue
            kwargs = {"n_bins": 10} if display is CalibrationDisplay else {}
            display.from_predictions(
                positive.astype(int), p.y_score[:, k], ax=ax, name=str(classes[k]), **kwargs
            )
        _titled(ax, name.replace("_", "-"), p)
        _save(fig, folder / f"{name}.png")


def _regression_charts(p: Predictions, folder: Path) -> None:
    import matplotlib.pyplot as plt
    from sklearn.metrics import PredictionErrorDisplay

    for kind, name in (
        ("actual_vs_predicted", "predicted_vs_true"),
        ("residual_vs_predicted", "residuals"),
    ):
        fig, ax = plt.subplots(figsize=(6, 5))
        PredictionErrorDisplay.from_predictions(
            p.y_true, p.y_pred, kind=kind, ax=ax, subsample=2000, random_state=0
        )
        _titled(ax, name.replace("_", " "), p)
        _save(fig, folder / f"{name}.png")


def _iterations_chart(results: list[IterationResult], metric: str, path: Path) -> None:
    """The primary metric of each finished iteration in the order they finished, with the
    running best: the seed's RunDetails chart."""
    import matplotlib.pyplot as plt

    scored = [(r.iteration, r.mean(metric)) for r in results if r.status == COMPLETED]
    points = [(n, s) for n, s in scored if s is not None and np.isfinite(s)]
    fig, ax = plt.subplots(figsize=(7, 4))
    if points:
        better = METRICS[metric].greater_is_better
        values = np.array([s for _, s in points])
        best = np.maximum.accumulate(values) if better else np.minimum.accumulate(values)
        order = np.arange(1, len(points) + 1)
        ax.scatter(order, values, s=14, label="iteration")
        ax.step(order, best, where="post", color="C1", label="best so far")
        ax.legend(loc="lower right" if better else "upper right")
    ax.set_xlabel("iterations finished")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by iteration")
    _save(fig, path)
