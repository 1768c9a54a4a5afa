from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from automl_runner.metrics import METRICS, Fold, better, score_fold, task_metrics


def _fold(y, pred=None, score=None, classes=None, y_range=1.0):
    y = np.asarray(y)
    return Fold(y, np.asarray(pred if pred is not None else y), score, classes, None, y_range)


def test_metric_names_are_azures():
    assert task_metrics("classification") == [
        "AUC_weighted",
        "accuracy",
        "average_precision_score_weighted",
        "norm_macro_recall",
        "precision_score_weighted",
    ]
    assert task_metrics("regression") == [
        "spearman_correlation",
        "normalized_root_mean_squared_error",
        "r2_score",
        "normalized_mean_absolute_error",
    ]


def test_auc_weighted_matches_sklearn_ovr_for_probabilities():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    proba = rng.dirichlet([1, 1, 1], 200)
    proba[np.arange(200), y] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    f = _fold(y, score=proba, classes=np.arange(3))
    expected = roc_auc_score(y, proba, multi_class="ovr", average="weighted")
    assert METRICS["AUC_weighted"].fn(f) == pytest.approx(expected)


def test_auc_works_from_decision_scores_that_do_not_sum_to_one():
    y = np.array(["a", "b", "c"] * 20)
    scores = np.zeros((60, 3))
    for i, label in enumerate("abc"):
        scores[y == label, i] = 5.0  # perfect ranking, raw margins
    f = _fold(y, score=scores - 2.0, classes=np.array(["a", "b", "c"]))
    assert METRICS["AUC_weighted"].fn(f) == pytest.approx(1.0)


def test_norm_macro_recall_is_zero_for_chance_and_one_for_perfect():
    y = np.array([0, 1, 2] * 10)
    assert METRICS["norm_macro_recall"].fn(_fold(y, classes=np.arange(3))) == 1.0
    assert (
        METRICS["norm_macro_recall"].fn(_fold(y, pred=np.zeros(30, int), classes=np.arange(3)))
        == 0.0
    )


def test_normalised_errors_divide_by_target_range():
    y = np.array([0.0, 10.0, 20.0])
    f = _fold(y, pred=y + 2.0, y_range=20.0)
    assert METRICS["normalized_mean_absolute_error"].fn(f) == pytest.approx(0.1)
    assert METRICS["normalized_root_mean_squared_error"].fn(f) == pytest.approx(0.1)
    assert not METRICS["normalized_mean_absolute_error"].greater_is_better
    assert score_fold("regression", f)["spearman_correlation"] == pytest.approx(1.0)


def test_better_respects_direction_and_nan():
    assert better("AUC_weighted", 0.9, 0.8) and not better("AUC_weighted", 0.7, 0.8)
    assert better("normalized_mean_absolute_error", 0.1, 0.2)
    assert not better("accuracy", float("nan"), None)
    assert better("accuracy", 0.5, None)
