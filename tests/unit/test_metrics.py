from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

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


@pytest.mark.parametrize("n_classes", [2, 3, 7])
@pytest.mark.parametrize("decimals", [0, 1, 2, 6])
def test_auc_and_average_precision_equal_sklearns_on_tied_scores(n_classes, decimals):
    # rounded scores tie often: the rank-based AUC must give ties half a pair, as the
    # ROC curve's trapezoids do; a class absent from the fold is left out of the average
    rng = np.random.default_rng(n_classes * 10 + decimals)
    labels = np.array(list("abcdefg"))[:n_classes]
    present = labels if n_classes < 7 else labels[:-1]
    y = present[rng.integers(0, len(present), 300)]
    score = np.round(rng.random((300, n_classes)), decimals)
    score[np.arange(300), np.searchsorted(labels, y)] += 0.3
    if n_classes == 2:
        truth, column = (y == labels[1]).astype(int), score[:, 1]
    else:
        truth = (y[:, None] == labels[None, :]).astype(int)
        keep = truth.sum(axis=0) > 0
        truth, column = truth[:, keep], score[:, keep]
    f = _fold(y, score=score, classes=labels)
    assert METRICS["AUC_weighted"].fn(f) == pytest.approx(
        roc_auc_score(truth, column, average="weighted"), abs=1e-12
    )
    assert METRICS["average_precision_score_weighted"].fn(f) == pytest.approx(
        average_precision_score(truth, column, average="weighted"), abs=1e-12
    )


def test_auc_of_a_fold_with_one_class_is_nan_as_with_sklearn():
    f = _fold(
        np.array(["a"] * 10),
        score=np.random.default_rng(0).random((10, 2)),
        classes=np.array(["a", "b"]),
    )
    with pytest.raises(ValueError, match="Only one class"):
        METRICS["AUC_weighted"].fn(f)
    assert np.isnan(score_fold("classification", f)["AUC_weighted"])


def test_auc_with_sample_weights_is_sklearns_weighted_auc():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    score = rng.random((200, 3))
    w = rng.random(200)
    f = Fold(y, y, score, np.arange(3), w, 1.0)
    truth = (y[:, None] == np.arange(3)[None, :]).astype(int)
    expected = roc_auc_score(truth, score, average="weighted", sample_weight=w)
    assert METRICS["AUC_weighted"].fn(f) == pytest.approx(expected, abs=1e-12)


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


@pytest.mark.parametrize("labels", ["ints", "strings", "unsorted"])
@pytest.mark.parametrize("n_classes", [2, 3, 6])
@pytest.mark.parametrize("weighted", [False, True])
def test_label_metrics_equal_sklearns(labels, n_classes, weighted):
    # the confusion-matrix fast path against scikit-learn's own functions: a class with
    # no row in the fold, a class predicted that is not in it, string and unsorted labels
    rng = np.random.default_rng(n_classes + 10 * weighted)
    classes = {
        "ints": np.arange(n_classes),
        "strings": np.array([f"class {c}" for c in "abcdef"[:n_classes]]),
        "unsorted": np.array(["zeta", "alpha", "mu", "beta", "omega", "kappa"][:n_classes]),
    }[labels]
    present = classes[: max(2, n_classes - 1)]
    y = present[rng.integers(0, len(present), 250)]
    pred = np.where(rng.random(250) < 0.6, y, classes[rng.integers(0, n_classes, 250)])
    w = rng.random(250) if weighted else None
    f = Fold(y, pred, None, classes, w, 1.0)
    chance = 1.0 / n_classes
    recall = recall_score(
        y, pred, labels=classes, average="macro", sample_weight=w, zero_division=0
    )
    expected = {
        "accuracy": accuracy_score(y, pred, sample_weight=w),
        "norm_macro_recall": max(0.0, (recall - chance) / (1 - chance)),
        "precision_score_weighted": precision_score(
            y, pred, average="weighted", sample_weight=w, zero_division=0
        ),
    }
    for name, value in expected.items():
        assert METRICS[name].fn(f) == pytest.approx(value, abs=1e-12), name


def test_label_metrics_of_labels_outside_the_classes_are_sklearns():
    y = np.array(["a", "b", "c", "a"] * 5)
    pred = np.array(["a", "b", "x", "c"] * 5)
    f = Fold(y, pred, None, np.array(["a", "b", "c"]), None, 1.0)
    assert METRICS["accuracy"].fn(f) == pytest.approx(accuracy_score(y, pred))
    assert METRICS["precision_score_weighted"].fn(f) == pytest.approx(
        precision_score(y, pred, average="weighted", zero_division=0)
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
