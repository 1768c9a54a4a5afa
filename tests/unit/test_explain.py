"""Additivity and raw-column aggregation of the SHAP explanation, for every explainer kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import require_boost, typed
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from automl_runner.data import Dataset
from automl_runner.experiment.setup import prepare
from automl_runner.search.tpe import TPESearch
from automl_runner.space import SearchSpace
from automl_runner.worker.explain import explain_pipeline, model_output, raw_names
from automl_runner.worker.iteration import refit

CASES = {
    "binary": (lambda: load_breast_cancer(return_X_y=True, as_frame=True), "classification"),
    "multiclass": (lambda: load_iris(return_X_y=True, as_frame=True), "classification"),
    "regression": (lambda: load_diabetes(return_X_y=True, as_frame=True), "regression"),
}
FAMILIES = {
    # family -> the explainer `auto` must pick for it
    "RandomForest": "tree",
    "GradientBoosting": "tree",
    "LogisticRegression": "linear",
    "ElasticNet": "linear",
    "KNN": "kernel",
    "SVM": "kernel",
}


def fitted(case: str, family: str):
    load, task = CASES[case]
    X, y = load()
    overrides = ["automl=regression", "data=diabetes"] if task == "regression" else []
    ds = Dataset("t", X, y.to_numpy(), numeric=list(X.columns))
    pipeline, data = refit_default(family, ds, overrides)
    return pipeline, X, data


def refit_default(family: str, ds: Dataset, overrides: tuple[str, ...] | list[str] = ()) -> tuple:
    """(the family's first candidate, its default, refit on all of ds; the prepared data)."""
    cfg = typed([*overrides, f"automl.allowed_models=[{family}]"])
    data = prepare(ds, cfg.automl)
    candidate = TPESearch(
        SearchSpace.for_task(cfg.search_space, cfg.automl), seed=0, metric="AUC_weighted"
    ).ask(1)[0]
    return refit(candidate, data), data


def assert_additive(e, pipeline, rows, tol=1e-6):
    out = model_output(pipeline, rows, e.output)
    assert out.shape == e.shap_raw.shape[:2]
    np.testing.assert_allclose(e.shap_raw.sum(axis=2) + e.expected[:, None], out, atol=tol)
    # the engineered view adds up to the same output
    np.testing.assert_allclose(e.shap_engineered.sum(axis=2) + e.expected[:, None], out, atol=tol)


SERVES = {"LogisticRegression": "classification", "ElasticNet": "regression"}
PAIRS = [
    (case, family)
    for case in CASES
    for family in FAMILIES
    if SERVES.get(family, CASES[case][1]) == CASES[case][1]
]


@pytest.mark.parametrize(("case", "family"), PAIRS)
def test_expected_value_plus_shap_values_is_the_model_output(case, family):
    task = CASES[case][1]
    pipeline, X, data = fitted(case, family)
    rows = X.iloc[:12]
    e = explain_pipeline(
        pipeline,
        rows,
        X,
        task=task,
        classes=None if data.classes is None else list(data.classes),
        raw_names=list(X.columns),
        kernel_nsamples=300,
    )
    assert e.explainer == FAMILIES[family]
    n_out = 1 if task == "regression" else len(data.classes)
    assert e.shap_raw.shape == (n_out, 12, X.shape[1])
    assert_additive(e, pipeline, rows)


def test_tree_explainer_refusal_falls_back_under_auto():
    X, y = load_iris(return_X_y=True, as_frame=True)
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("model", GradientBoostingClassifier(n_estimators=20))]
    ).fit(X, y)
    e = explain_pipeline(
        pipeline,
        X.iloc[:8],
        X,
        task="classification",
        classes=[0, 1, 2],
        raw_names=list(X.columns),
        kernel_nsamples=200,
    )
    assert e.explainer == "kernel"
    assert any("tree explainer refused GradientBoostingClassifier" in n for n in e.notes)
    assert_additive(e, pipeline, X.iloc[:8])
    with pytest.raises(ValueError, match="GradientBoostingClassifier is only supported for binary"):
        explain_pipeline(
            pipeline,
            X.iloc[:8],
            X,
            task="classification",
            classes=[0, 1, 2],
            raw_names=list(X.columns),
            explainer="tree",
        )


def test_a_classifier_behind_the_label_encoder_is_explained_itself():
    """encode_labels' wrapper (string labels to 0..k-1) is looked through: the kernel
    explainer's values add up to the probabilities of the classes as named."""
    from automl_test_estimators import ZeroToKClassifier  # tests/helpers, on the path

    from automl_runner.worker.pipeline import encode_labels

    X, y = load_iris(return_X_y=True, as_frame=True)
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("model", encode_labels(ZeroToKClassifier()))]
    ).fit(X, names)
    e = explain_pipeline(
        pipeline,
        X.iloc[:8],
        X,
        task="classification",
        classes=list(pipeline.classes_),
        raw_names=list(X.columns),
        kernel_nsamples=200,
    )
    assert e.explainer == "kernel" and e.classes == ["setosa", "versicolor", "virginica"]
    assert_additive(e, pipeline, X.iloc[:8])


def test_one_hot_and_indicator_columns_sum_back_to_their_source_column():
    rng = np.random.default_rng(0)
    n = 400
    X = pd.DataFrame(
        {
            "city": rng.choice(["paris", "rome", "oslo", "lima"], n).astype(object),
            "city_size": rng.normal(size=n),  # a name that starts like another column
            "noise": rng.normal(size=n),
        }
    )
    X.loc[::10, "noise"] = np.nan
    y = np.where(X["city"].isin(["paris", "rome"]), "south", "north")
    ds = Dataset("t", X, y, numeric=["city_size", "noise"], categorical=["city"])
    pipeline, data = refit_default("LogisticRegression", ds)
    rows = X.iloc[:30]
    e = explain_pipeline(
        pipeline, rows, X, task="classification", classes=list(data.classes), raw_names=raw_names(X)
    )
    assert e.raw_names == ["city", "city_size", "noise"]
    assert e.source.count("city") == 4  # four one-hot columns
    assert "missingindicator_noise" in e.engineered_names
    assert e.source[e.engineered_names.index("missingindicator_noise")] == "noise"
    assert e.source[e.engineered_names.index("city_size")] == "city_size"
    # raw = engineered summed per source column, and it still adds up
    city = [j for j, s in enumerate(e.source) if s == "city"]
    np.testing.assert_allclose(e.shap_raw[:, :, 0], e.shap_engineered[:, :, city].sum(axis=2))
    assert_additive(e, pipeline, rows)
    summary, names = e.overall()
    assert names[0] == "city" and summary == sorted(summary, reverse=True)
    per_class_summary, per_class_imp = e.per_class()
    assert len(per_class_imp) == 2 and per_class_imp[0][0] == "city"


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("classes", [2, 3])
def test_boosted_trees_get_the_tree_explainer_in_their_margin(library, classes):
    """LightGBM and XGBoost are tree models: the tree explainer, exact and fast, in their
    raw margin (log-odds), which the library's own raw-score switch reproduces."""
    lib = require_boost(library)
    X, y = (
        load_iris(return_X_y=True, as_frame=True)
        if classes == 3
        else load_breast_cancer(return_X_y=True, as_frame=True)
    )
    model = (
        lib.LGBMClassifier(n_estimators=30, verbose=-1)
        if library == "lightgbm"
        else lib.XGBClassifier(n_estimators=30)
    )
    pipeline = Pipeline([("scale", StandardScaler()), ("model", model)]).fit(X, y)
    e = explain_pipeline(
        pipeline,
        X.iloc[:20],
        X,
        task="classification",
        classes=sorted(set(y)),
        raw_names=list(X.columns),
    )
    assert (e.explainer, e.output) == ("tree", "log-odds")
    assert e.shap_engineered.shape == (classes, 20, X.shape[1])
    # XGBoost computes in float32
    assert_additive(e, pipeline, X.iloc[:20], tol=1e-4 if library == "xgboost" else 1e-6)


@pytest.mark.parametrize("space", [None, "probability"])
def test_catboost_on_native_categories_is_explained_per_raw_column(space):
    """CatBoost fitted on integer category codes: the tree explainer in its margin, or
    the kernel explainer in probability (an ensemble's member), both exact, with one
    engineered column per categorical column."""
    require_boost("catboost")
    rng = np.random.default_rng(0)
    n = 300
    X = pd.DataFrame(
        {
            "city": rng.choice(["paris", "rome", "oslo", "lima"], n).astype(object),
            "size": rng.normal(size=n),
        }
    )
    X.loc[::9, "city"] = np.nan
    y = np.where(X["city"].isin(["paris", "rome"]) | (X["size"] > 1), "south", "north")
    ds = Dataset("t", X, y, numeric=["size"], categorical=["city"])
    pipeline, data = refit_default("CatBoost", ds)
    rows = X.iloc[:12]
    e = explain_pipeline(
        pipeline,
        rows,
        X,
        task="classification",
        classes=list(data.classes),
        raw_names=raw_names(X),
        space=space,
        kernel_nsamples=None,
    )
    assert (e.explainer, e.output) == (
        ("tree", "log-odds") if space is None else ("kernel", "probability")
    )
    assert e.engineered_names == ["size", "city"] and e.source == ["size", "city"]
    assert_additive(e, pipeline, rows, tol=1e-6 if space is None else 1e-4)
    assert e.overall()[1][0] == "city"
