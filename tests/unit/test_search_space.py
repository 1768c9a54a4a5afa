from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from conftest import BROKEN, require_boost, typed
from scipy import sparse
from sklearn.datasets import make_classification, make_regression

from automl_runner.data import Dataset
from automl_runner.data.dataset import _type_columns, missing_values
from automl_runner.experiment.setup import prepare
from automl_runner.records import COMPLETED, FAILED
from automl_runner.search.tpe import TPESearch
from automl_runner.space import SearchSpace
from automl_runner.worker.iteration import run_iteration
from automl_runner.worker.pipeline import pipeline_for


def _space(*overrides, sparse_input=False):
    cfg = typed(overrides)
    return cfg, SearchSpace.for_task(cfg.search_space, cfg.automl, sparse_input=sparse_input)


def _prepared(cfg, X, y, **kw):
    ds = Dataset("t", X, y, **kw)
    return prepare(ds, cfg.automl)


def test_same_seed_same_candidates_other_seed_others():
    _, space = _space()
    first = [c.key() for c in TPESearch(space, seed=3, metric="AUC_weighted").ask(30)]
    again = TPESearch(space, seed=3, metric="AUC_weighted")
    # asking in chunks of any size (any concurrency) gives the same sequence
    chunks = again.ask(1) + again.ask(4) + again.ask(25)
    assert [c.key() for c in chunks] == first
    other = [c.key() for c in TPESearch(space, seed=4, metric="AUC_weighted").ask(30)]
    assert other != first
    assert len(set(first)) == 30


def test_portfolio_tries_every_family_default_first():
    _, space = _space()
    asked = TPESearch(space, seed=0, metric="AUC_weighted").ask(len(space.estimators))
    assert sorted(c.family for c in asked) == sorted(e.name for e in space.estimators)
    assert all(c.origin == "portfolio" for c in asked)


def test_allowed_and_blocked_models_shape_the_space():
    _, space = _space("automl.allowed_models=[SVM,KNN,RandomForest]", "automl.blocked_models=[KNN]")
    assert sorted(e.name for e in space.estimators) == ["RandomForest", "SVM"]
    asked = TPESearch(space, seed=0, metric="AUC_weighted").ask(40)
    assert {c.family for c in asked} == {"RandomForest", "SVM"}


def test_sparse_input_skips_dense_only_components():
    _, space = _space(sparse_input=True)
    assert "standard_scaler" not in [p.key for p in space.preprocessors]
    assert "hist_gradient_boosting_classifier" not in [e.key for e in space.estimators]


def test_uninstalled_family_is_skipped_not_fatal():
    _, space = _space(
        "++search_space.estimators={ghost: {_target_: not_installed_pkg.Model, name: Ghost,"
        " display: ghost, task: classification}}"
    )
    assert "ghost" not in [e.key for e in space.estimators]
    assert any("ghost" in s for s in space.skipped)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_family_fits_at_its_default_and_at_sampled_settings(task):
    """Each YAML's _target_, fixed, default and ranges give valid scikit-learn arguments."""
    cfg, space = _space(
        *(["automl=regression"] if task == "regression" else []), "automl.n_cross_validations=2"
    )
    if task == "classification":
        X, y = make_classification(120, 6, n_informative=4, n_classes=3, random_state=0)
        y = np.array(["low", "mid", "high"])[y]
        # string labels: families that take labels 0..k-1 only (XGBoost) included
    else:
        X, y = make_regression(120, 6, noise=1.0, random_state=0)
    if os.environ.get("AUTOML_TEST_REQUIRE_BOOST") == "1":
        # CI installs the boost extra: the XGBoost and CatBoost files are fitted too
        assert not [s for s in space.skipped if "not installed" in s], space.skipped
        assert {"XGBoost", "CatBoost"} <= {e.name for e in space.estimators}
    # LightGBM is a core dependency: always searched
    assert "LightGBM" in {e.name for e in space.estimators}
    data = _prepared(cfg, X, y)
    search = TPESearch(space, seed=0, metric="AUC_weighted")
    candidates = search.ask(len(space.estimators) + 40)
    failures = []
    for i, c in enumerate(candidates):
        r = run_iteration(i, c, data)
        if r.status != COMPLETED or np.isnan(r.mean(cfg.automl.primary_metric)):
            failures.append((c.description, c.estimator_params, r.error))
    assert not failures, failures


@pytest.mark.parametrize("preprocessor", ["standard_scaler", "robust_scaler", "minmax_scaler"])
def test_cross_validation_scores_are_scikit_learns_on_the_same_folds(preprocessor):
    """Numeric data without missing values: the scaler is the first step and sees the
    fold's own rows; scoring them (labels, then probabilities) must not scale them twice."""
    from sklearn.base import clone
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import accuracy_score, roc_auc_score

    cfg, space = _space("automl.allowed_models=[LogisticRegression]")
    X, y = load_breast_cancer(return_X_y=True)
    data = _prepared(cfg, X, y)
    pre = next(p for p in space.preprocessors if p.key == preprocessor)
    est = space.estimators[0]
    candidate = space.candidate(pre, est, {}, est.default, "test")
    result = run_iteration(0, candidate, data)
    assert result.status == COMPLETED, result.error
    auc, acc = [], []
    for train, valid in data.splits:
        model = clone(pipeline_for(data, candidate)).fit(X[train], y[train])
        auc.append(roc_auc_score(y[valid], model.predict_proba(X[valid])[:, 1]))
        acc.append(accuracy_score(y[valid], model.predict(X[valid])))
    np.testing.assert_allclose(result.fold_scores["AUC_weighted"], auc, rtol=1e-9)
    np.testing.assert_allclose(result.fold_scores["accuracy"], acc, rtol=1e-9)
    assert min(auc) > 0.95


def test_preprocess_handles_strings_nan_and_unseen_categories():
    cfg, space = _space("automl.n_cross_validations=3")
    rng = np.random.default_rng(0)
    n = 90
    X = pd.DataFrame(
        {"num": rng.normal(size=n), "cat": rng.choice(["a", "b", "c"], n).astype(object)}
    )
    X.loc[::4, "num"] = np.nan
    X.loc[::6, "cat"] = np.nan
    y = np.where(X["cat"].fillna("a") == "a", "yes", "no")
    ds = Dataset("t", X, y, numeric=["num"], categorical=["cat"])
    data = prepare(ds, cfg.automl)
    from automl_runner.worker.iteration import refit

    candidate = TPESearch(space, seed=0, metric="AUC_weighted").ask(1)[0]
    model = refit(candidate, data)
    unseen = pd.DataFrame({"num": [np.nan, 1.0], "cat": ["zebra", np.nan]})
    assert len(model.predict(unseen)) == 2


def test_sparse_input_runs():
    cfg, space = _space("automl.n_cross_validations=3", sparse_input=True)
    X, y = make_classification(90, 8, random_state=0)
    X = sparse.csr_matrix(np.where(X > 0.5, X, 0.0))
    data = _prepared(cfg, X, y)
    for i, c in enumerate(
        TPESearch(space, seed=0, metric="AUC_weighted").ask(len(space.estimators))
    ):
        r = run_iteration(i, c, data)
        assert r.status == COMPLETED, (c.description, r.error)


def test_a_raising_estimator_becomes_a_failed_result_with_traceback():
    cfg, space = _space(BROKEN, "automl.allowed_models=[Broken]", "automl.n_cross_validations=2")
    X, y = make_classification(40, 4, random_state=0)
    candidate = TPESearch(space, seed=0, metric="AUC_weighted").ask(1)[0]
    r = run_iteration(7, candidate, _prepared(cfg, X, y))
    assert r.status == FAILED and r.iteration == 7
    assert "RuntimeError: this estimator always fails" in r.error
    assert "Traceback" in r.log
    assert r.mean("AUC_weighted") is None


def test_x_valid_replaces_cross_validation():
    cfg, space = _space("automl.allowed_models=[LogisticRegression]")
    X, y = make_classification(100, 4, random_state=0)
    data = _prepared(cfg, X[:70], y[:70], X_valid=X[70:], y_valid=y[70:])
    assert data.splits == []
    r = run_iteration(0, TPESearch(space, seed=0, metric="AUC_weighted").ask(1)[0], data)
    assert r.status == COMPLETED and len(r.fold_scores["AUC_weighted"]) == 1


def test_validation_size_gives_one_stratified_holdout():
    cfg, _ = _space("automl.n_cross_validations=null", "automl.validation_size=0.25")
    X, y = make_classification(100, 4, random_state=0)
    data = _prepared(cfg, X, y)
    assert len(data.splits) == 1 and len(data.splits[0][1]) == 25


def test_sample_weight_reaches_fit_and_scores():
    cfg, space = _space(
        "automl.allowed_models=[LogisticRegression]", "automl.n_cross_validations=3"
    )
    X, y = make_classification(120, 4, random_state=0)
    candidate = TPESearch(space, seed=0, metric="AUC_weighted").ask(1)[0]
    plain = run_iteration(0, candidate, _prepared(cfg, X, y))
    # weights that zero out half the rows change both the fit and the weighted scores
    weight = np.where(np.arange(120) % 2 == 0, 1.0, 0.0)
    weighted = run_iteration(0, candidate, _prepared(cfg, X, y, sample_weight=weight))
    assert weighted.status == COMPLETED
    assert weighted.fold_scores["accuracy"] != plain.fold_scores["accuracy"]


def test_imputation_step_only_where_the_data_has_missing_values():
    """Numeric rows without a missing value get no imputer (it would copy them twice)."""
    cfg, space = _space("automl.n_cross_validations=2")
    X, y = make_classification(80, 4, random_state=0)
    candidate = TPESearch(space, seed=0, metric="AUC_weighted").ask(1)[0]

    def steps(data):
        return list(pipeline_for(data, candidate).named_steps)

    assert steps(_prepared(cfg, X, y)) == ["scale", "model"]
    gap = X.copy()
    gap[3, 1] = np.nan
    assert steps(_prepared(cfg, gap, y))[0] == "prepare"
    # a gap only in X_valid still needs the imputer fitted on X
    holdout = _prepared(cfg, X[:60], y[:60], X_valid=gap[:20], y_valid=y[:20])
    assert steps(holdout)[0] == "prepare"
    frame = pd.DataFrame(X, columns=list("abcd"))
    assert steps(_prepared(cfg, frame, y)) == ["scale", "model"]
    frame["city"] = np.where(y == 1, "north", "south")
    ds = Dataset("t", frame, y)
    _type_columns(ds, cfg.automl, "test")
    assert steps(prepare(ds, cfg.automl))[0] == "prepare"
    # without the imputer the iteration still scores, and no value changes on the way
    r = run_iteration(0, candidate, _prepared(cfg, X, y))
    assert r.status == COMPLETED, r.error


def test_missing_values_are_counted_block_by_block():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 7))
    where = rng.random(X.shape) < 0.01
    X[where] = np.nan
    assert missing_values(X, chunk_rows=64) == int(where.sum()) > 0
    assert missing_values(X.astype(np.float32), chunk_rows=1000) == int(where.sum())
    assert missing_values(np.ones((5, 2), dtype=int)) == 0
    assert missing_values(pd.DataFrame({"a": [1.0, None], "b": ["x", None]})) == 2


def test_no_scaling_passes_the_features_through_unchanged():
    cfg, space = _space("search_space/preprocessors=[no_scaling]", "automl.n_cross_validations=2")
    assert [p.key for p in space.preprocessors] == ["no_scaling"]
    X, y = make_classification(80, 4, random_state=0)
    candidate = TPESearch(space, seed=0, metric="AUC_weighted").ask(1)[0]
    assert candidate.description.startswith("Unscaled ")
    pipe = pipeline_for(_prepared(cfg, pd.DataFrame(X, columns=list("abcd")), y), candidate)
    pipe.fit(pd.DataFrame(X, columns=list("abcd")), y)
    out = pipe.named_steps["scale"].transform(X)
    assert out is X  # the identity: not even a copy
    assert list(pipe[:-1].get_feature_names_out()) == list("abcd")


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_catboost_takes_the_categorical_columns_natively(task):
    """CatBoost gets the categories as integer codes named in cat_features (its ordered
    target statistics), with no scaler; missing and unseen values have codes of their own;
    every other family still gets one-hot columns."""
    require_boost("catboost")
    overrides = ["automl=regression", "data=diabetes"] if task == "regression" else []
    cfg = typed([*overrides, "automl.n_cross_validations=3"])
    rng = np.random.default_rng(0)
    n = 150
    X = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "zip": rng.choice([f"z{i}" for i in range(40)], n).astype(object),
            "kind": rng.choice(["house", "flat"], n).astype(object),
        }
    )
    X.loc[::7, "zip"] = np.nan
    X.loc[::5, "num"] = np.nan
    signal = X["zip"].fillna("z0").str[1:].astype(int) % 2 + (X["kind"] == "flat")
    y = signal.to_numpy(float) if task == "regression" else np.where(signal > 0, "yes", "no")
    ds = Dataset("t", X, y, numeric=["num"], categorical=["zip", "kind"])
    data = prepare(ds, cfg.automl)
    space = SearchSpace.for_task(cfg.search_space, cfg.automl)
    by_family = {c.family: c for c in TPESearch(space, seed=0, metric="AUC_weighted").ask(99)}
    catboost = by_family["CatBoost"]
    assert (catboost.description, catboost.preprocessor) == ("CatBoost", "")
    pipeline = pipeline_for(data, catboost)
    assert [name for name, _ in pipeline.steps] == ["prepare", "model"]
    from automl_runner.worker.iteration import refit

    model = refit(catboost, data)
    codes = model[:-1].transform(X.iloc[:10])
    assert {str(codes[c].dtype) for c in ("zip", "kind")} == {"int64"}
    fitted = model.steps[-1][1]
    fitted = getattr(fitted, "estimators_", [fitted])[0]  # behind a label encoder or not
    names = list(fitted.feature_names_)
    assert sorted(names[i] for i in fitted.get_cat_feature_indices()) == ["kind", "zip"]
    unseen = pd.DataFrame({"num": [np.nan, 1.0], "zip": ["z999", np.nan], "kind": [np.nan, "boat"]})
    assert len(model.predict(unseen)) == 2
    assert run_iteration(0, catboost, data).status == COMPLETED
    # one-hot for the others
    other = by_family["LightGBM"]
    assert other.preprocessor and [n for n, _ in pipeline_for(data, other).steps][1] == "scale"
    onehot = refit(other, data)[0].transform(X.iloc[:10])
    assert onehot.shape[1] > 5  # num, its missing flag, a column per frequent value
