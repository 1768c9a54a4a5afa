"""An ensemble explained as the model the user gets: real ensembles, built and refit the way
the runner builds them, explained with real SHAP, add up to their own output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import typed
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.tree import DecisionTreeClassifier

from automl_runner.data import Dataset
from automl_runner.experiment.setup import prepare
from automl_runner.records import COMPLETED
from automl_runner.search.tpe import TPESearch
from automl_runner.space import SearchSpace
from automl_runner.worker.blending import Selection
from automl_runner.worker.ensemble import STACKING, VOTING, numbered, plan_ensembles, run_ensemble
from automl_runner.worker.explain import explain_pipeline
from automl_runner.worker.explain_ensemble import (
    ROW_TASKS,
    ensemble_output,
    explain_ensemble,
    members_of,
    serial_map,
)
from automl_runner.worker.explain_task import explain_best
from automl_runner.worker.iteration import refit, run_iteration

METRIC = "AUC_weighted"
# a tree explainer (probabilities), a linear model (its own explainer gives log-odds, so the
# kernel explainer on its probabilities) and a kernel-only model
FAMILIES = "automl.allowed_models=[RandomForest,LogisticRegression,KNN]"
REGRESSION_FAMILIES = "automl.allowed_models=[RandomForest,ElasticNet,KNN]"
KERNEL = {"kernel_nsamples": 300, "kernel_rows": 12}


def _with_categories() -> tuple[pd.DataFrame, np.ndarray, Dataset]:
    """Breast cancer's first columns, one of them made categorical and one with holes:
    members then see one-hot and missing-indicator features their values sum back from."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :6].copy()
    X["size"] = pd.cut(X.pop("mean area"), 4, labels=["s", "m", "l", "xl"]).astype(object)
    X.loc[::7, "mean texture"] = np.nan
    numeric = [c for c in X.columns if c != "size"]
    return X, y.to_numpy(), Dataset("t", X, y.to_numpy(), numeric=numeric, categorical=["size"])


def _iris() -> tuple[pd.DataFrame, np.ndarray, Dataset]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y.to_numpy(), Dataset("t", X, y.to_numpy(), numeric=list(X.columns))


def _diabetes() -> tuple[pd.DataFrame, np.ndarray, Dataset]:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X, y.to_numpy(), Dataset("t", X, y.to_numpy(), numeric=list(X.columns))


def built(case, n: int = 6, seed: int = 0):
    """(X, prepared data, {ensemble kind: refit sklearn ensemble}) as the runner builds them:
    TPE's first `n` candidates CV-scored, the pool planned, both ensembles built from the
    out-of-fold predictions, then refit on all rows."""
    X, _, ds = case()
    regression = case is _diabetes
    cfg = typed(
        ["automl=regression", "data=diabetes", REGRESSION_FAMILIES] if regression else [FAMILIES]
    )
    metric = cfg.automl.primary_metric
    data = prepare(ds, cfg.automl)
    search = TPESearch(SearchSpace.for_task(cfg.search_space, cfg.automl), seed=seed, metric=metric)
    results = [run_iteration(i, c, data) for i, c in enumerate(search.ask(n))]
    plan = plan_ensembles(results, data, metric, voting=True, stacking=True, candidates=10)
    assert plan is not None
    made = [
        run_ensemble(kind, plan.members, data, metric, Selection(20, 20), n + k)
        for k, kind in enumerate(plan.kinds)
    ]
    ensembles = {r.candidate.family: r for r in numbered(made, n)}
    assert all(r.status == COMPLETED for r in ensembles.values())
    assert len(ensembles[VOTING].candidate.member_iterations) >= 2
    return X, data, {kind: refit(r.candidate, data) for kind, r in ensembles.items()}


def explained(model, X, data, rows=20):
    return explain_ensemble(
        model,
        X.iloc[:rows],
        X,
        task=data.task,
        classes=None if data.classes is None else list(data.classes),
        raw_names=[str(c) for c in X.columns],
        **KERNEL,
    )


def max_error(e, model, X, task="classification") -> float:
    """The largest |expected value + sum of SHAP values - the ensemble's output| over the
    explained rows and classes, in the user's columns and in the engineered features."""
    n = e.shap_raw.shape[1]
    out = ensemble_output(model, X.iloc[:n], task)
    raw = np.abs(e.shap_raw.sum(axis=2) + e.expected[:, None] - out).max()
    engineered = np.abs(e.shap_engineered.sum(axis=2) + e.expected[:, None] - out).max()
    return float(max(raw, engineered))


@pytest.mark.parametrize("case", [_with_categories, _iris], ids=["binary-categorical", "iris"])
def test_a_voting_ensemble_is_its_members_weighted_sum_in_probability(case):
    X, data, models = built(case)
    model = models[VOTING]
    e = explained(model, X, data)
    assert e.output == "probability" and e.model.startswith("VotingClassifier of iteration_")
    assert max_error(e, model, X) < 1e-6
    # the values add up to predict_proba itself, not to something near it
    np.testing.assert_allclose(
        e.shap_raw.sum(axis=2).T + e.expected,
        model.predict_proba(X.iloc[: e.shap_raw.shape[1]]),
        atol=1e-6,
    )
    # in the user's columns: each member's values summed per column, weighted
    weights = np.asarray(model.weights) / np.sum(model.weights)
    assert [m.name for m in e.members] == list(model.named_estimators_)
    total = sum(w * m.explanation.shap_raw for w, m in zip(weights, e.members, strict=True))
    np.testing.assert_allclose(e.shap_raw, total, atol=1e-12)
    assert e.shap_raw.shape == (len(data.classes), 12, X.shape[1])  # the kernel's 12 rows
    assert {m.explanation.explainer for m in e.members} <= {"tree", "kernel"}


@pytest.mark.parametrize("case", [_with_categories, _iris], ids=["binary-categorical", "iris"])
def test_a_stacking_ensemble_adds_up_in_its_final_estimators_log_odds(case):
    X, data, models = built(case)
    model = models[STACKING]
    e = explained(model, X, data)
    assert e.output == "log-odds" and e.model.startswith("StackingClassifier of iteration_")
    assert max_error(e, model, X) < 1e-6
    # the final estimator's decision function: for two classes the log-odds of the second
    # (the first's mirrored), for more the logits whose softmax is the probability
    logits = e.shap_raw.sum(axis=2) + e.expected[:, None]
    if len(data.classes) == 2:
        proba = 1 / (1 + np.exp(-logits[1]))
        proba = np.vstack([1 - proba, proba])
    else:
        proba = np.exp(logits) / np.exp(logits).sum(axis=0)
    np.testing.assert_allclose(proba.T, model.predict_proba(X.iloc[: logits.shape[1]]), atol=1e-6)
    assert len(e.members) == len(model.named_estimators_)
    if "size" in X.columns:  # one-hot features of every member summed back to "size"
        assert sum(s == "size" for s in e.source) >= 4 * len(e.members)


def test_a_final_estimator_that_is_not_linear_falls_back_to_the_kernel_explainer():
    X, data, models = built(_iris)
    model = models[STACKING]
    F = model.transform(X)
    model.final_estimator_ = DecisionTreeClassifier(max_depth=3, random_state=0).fit(F, data.y)
    e = explained(model, X, data)
    assert e.explainer == "kernel" and e.output == "probability" and not e.members
    assert "not linear" in e.notes[0]
    assert e.shap_raw.shape[1] == KERNEL["kernel_rows"]
    assert max_error(e, model, X) < 1e-6


def test_the_explanation_task_explains_the_ensemble_on_the_configured_rows():
    X, data, models = built(_iris)
    settings = {
        "rows": 20,
        "explainer": "auto",
        "background_size": 50,
        "kernel_kmeans": 5,
        **KERNEL,
    }
    e, rows = explain_best(models[VOTING], data, settings)
    assert e.model.startswith("VotingClassifier") and len(rows) == e.shap_raw.shape[1] == 12
    assert max_error(e, models[VOTING], rows) < 1e-6
    with pytest.raises(ValueError, match="explain.explainer=linear explains the decision_function"):
        explain_best(models[VOTING], data, {**settings, "explainer": "linear"})


def test_a_kernel_members_rows_are_explained_in_tasks_that_join_in_row_order():
    X, data, models = built(_iris)
    voting = models[VOTING]
    calls: list[dict] = []

    def recording(fn, asked):  # the engine's ray_map runs them as tasks; here in turn
        calls.extend(asked)
        return serial_map(fn, asked)

    e = explain_ensemble(
        voting,
        X.iloc[:20],
        X,
        task=data.task,
        classes=list(data.classes),
        raw_names=[str(c) for c in X.columns],
        mapper=recording,
        **KERNEL,
    )
    kernel = [m for m in e.members if m.explanation.explainer == "kernel"]
    assert kernel  # iris' linear and kNN members: exact in probability by the kernel alone
    # each kernel member's 12 rows in ROW_TASKS tasks of 3; any tree member's 20 in one
    assert len(calls) == len(e.members) + (ROW_TASKS - 1) * len(kernel)
    assert [c["X_rows"].shape[0] for c in calls].count(12 // ROW_TASKS) == ROW_TASKS * len(kernel)
    assert max_error(e, voting, X) < 1e-6
    pipelines = dict(members_of(voting))
    for m in kernel:
        assert m.explanation.notes[0] == "kernel explainer: explained the first 12 of 20 rows"
        # 4 columns: 300 coalitions enumerate all 14, so the values are exact and the joined
        # chunks must be the member explained whole, row for row
        mine = next(c for c in calls if c["pipeline"] is pipelines[m.name])
        whole = explain_pipeline(**{**mine, "X_rows": X.iloc[:20]})
        np.testing.assert_allclose(m.explanation.shap_engineered, whole.shap_engineered, atol=1e-9)
        np.testing.assert_allclose(m.explanation.expected, whole.expected, atol=1e-12)


def test_a_regression_ensemble_adds_up_to_its_prediction():
    X, data, models = built(_diabetes)
    for kind, model in models.items():
        e = explained(model, X, data)
        assert e.output == "prediction" and e.classes is None, kind
        assert max_error(e, model, X, "regression") < 1e-6, kind
        added = e.shap_raw[0].sum(axis=1) + e.expected[0]
        np.testing.assert_allclose(added, model.predict(X.iloc[: len(added)]), atol=1e-6)


def test_auto_bounds_the_kernel_members_work_then_falls_back_to_the_leading_member():
    from automl_runner.worker.explain_ensemble import kernel_cost, leading_member
    from automl_runner.worker.explain_task import model_to_explain

    X, data, models = built(_iris)
    voting = models[VOTING]
    rows = X.iloc[:20]
    # iris' members include a linear model: exact in probability only by the kernel
    # explainer
    per_row, width = kernel_cost(voting, X, "classification")
    assert per_row > 0 and width == 4
    options = {"kernel_rows": 12, "kernel_kmeans": 5, "kernel_nsamples": 300}
    per_sample = per_row * 5 * 12  # seconds per coalition per row, over the 12 rows

    def plan(mode, seconds):
        # priced once, above: the plan's arithmetic, not the machine's noise, is checked
        return model_to_explain(
            voting,
            rows,
            X,
            "classification",
            {**options, "ensemble": mode, "ensemble_kernel_seconds": seconds},
            price=lambda *_: (per_row, width),
        )

    # within the bound: the ensemble as asked
    assert plan("auto", per_sample * 300) == (voting, None, options)
    assert plan("auto", None) == (voting, None, options)
    # over it: as many coalitions per row as the bound pays for, not under 2 x 4 + 2
    target, note, reduced = plan("auto", per_sample * 60.5)
    assert target is voting and reduced["kernel_nsamples"] == 60
    assert note.startswith("kernel explainer on the ensemble's members: 60 coalitions per row")
    target, _, reduced = plan("auto", per_sample * 10.5)
    assert target is voting and reduced["kernel_nsamples"] == 10
    # under the floor: the leading member, and the note says why
    target, note, _ = plan("auto", per_sample * 9.5)
    lead, name = leading_member(voting)
    assert target is lead
    assert f"its leading member {name}" in note and "explain.ensemble=always" in note
    assert plan("always", per_sample * 0.5)[:2] == (voting, None)
    target, note, _ = plan("leading", None)
    assert target is lead and "explain.ensemble=leading" in note
    # fewer coalitions keep the ensemble's values exact in sum
    e, explained_rows = explain_best(
        voting,
        data,
        {"rows": 20, "explainer": "auto", "background_size": 50, **options, "kernel_nsamples": 10},
    )
    assert e.model.startswith("VotingClassifier")
    assert max_error(e, voting, explained_rows) < 1e-6
