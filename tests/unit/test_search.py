"""Search strategies and ensembles, without Ray: iterations run in this process."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
from conftest import require_boost, typed
from sklearn.datasets import load_breast_cancer, make_friedman1

from automl_runner.data import Dataset
from automl_runner.experiment.budget import (
    EVALUATION_SECONDS,
    LOG_SECONDS,
    RESTART_SECONDS,
    finishing_seconds,
)
from automl_runner.experiment.record import Record
from automl_runner.experiment.setup import prepare
from automl_runner.records import COMPLETED, IterationResult
from automl_runner.search.random_search import RandomSearch
from automl_runner.search.tpe import TPESearch
from automl_runner.space import SearchSpace
from automl_runner.worker.blending import (
    Scorer,
    Selection,
    greedy_weights,
    stack_features,
    voting_weights,
)
from automl_runner.worker.ensemble import (
    STACKING,
    VOTING,
    numbered,
    plan_ensembles,
    pool,
    run_ensemble,
)
from automl_runner.worker.iteration import refit, run_iteration


def ensemble_iterations(
    results, data, metric, *, voting, stacking, candidates, rounds, first_iteration, bags=20
) -> list[IterationResult]:
    """The ensembles built in this process, one after the other, as the driver plans,
    runs and numbers them (without Ray)."""
    plan = plan_ensembles(
        results, data, metric, voting=voting, stacking=stacking, candidates=candidates
    )
    if plan is None:
        return []
    built = [
        run_ensemble(kind, plan.members, data, metric, Selection(rounds, bags), first_iteration + k)
        for k, kind in enumerate(plan.kinds)
    ]
    return numbered(built, first_iteration)


def _space(*overrides: str, **kw) -> tuple:
    cfg = typed(overrides)
    return cfg, SearchSpace.for_task(cfg.search_space, cfg.automl, **kw)


def _told(space, family_scores: dict[str, float], n: int = 1) -> list[IterationResult]:
    out = []
    for est in space.estimators:
        c = space.candidate(space.preprocessors[0], est, {}, est.default, "portfolio")
        s = family_scores.get(est.name, 0.6)
        out.append(IterationResult(len(out), c, COMPLETED, {"AUC_weighted": [s]}, duration=1.0))
    return out


def test_tpe_spends_its_asks_on_the_families_that_score_best():
    _, space = _space()
    search = TPESearch(space, seed=0, metric="AUC_weighted")
    portfolio = search.ask(len(space.estimators))
    assert {c.origin for c in portfolio} == {"portfolio"}
    # portfolio first tries are cheapest first (cost from the YAML files)
    costs = [next(e.cost for e in space.estimators if e.key == c.estimator) for c in portfolio]
    assert costs == sorted(costs)
    scores = {"RandomForest": 0.99, "ExtremeRandomTrees": 0.98}
    for r in _told(space, scores):
        search.tell(r)
    asked = Counter(c.family for c in search.ask(60))
    # the best family gets the most asks, the two leaders most of them
    assert asked.most_common(1)[0][0] == "RandomForest"
    assert asked["RandomForest"] + asked["ExtremeRandomTrees"] > 60 * 0.6


def test_tpe_prefers_the_cheaper_of_two_equal_families():
    _, space = _space("automl.allowed_models=[RandomForest,ExtremeRandomTrees]")
    search = TPESearch(space, seed=1, metric="AUC_weighted")
    search.ask(2)
    for r in _told(space, {"RandomForest": 0.95, "ExtremeRandomTrees": 0.95}):
        r.duration = 20.0 if r.candidate.family == "RandomForest" else 0.5
        search.tell(r)
    asked = Counter(c.family for c in search.ask(100))
    assert asked["ExtremeRandomTrees"] > asked["RandomForest"]


@pytest.mark.parametrize("fold_spread", [0.02, 0.002])
def test_tpe_tunes_first_the_families_the_cv_cannot_tell_from_the_leader(fold_spread):
    """Gradient boosting leads at 0.93, extra trees' default scores 0.915, SVM's 0.80.
    With folds spread by 0.02 (standard error ~0.009), extra trees is within two standard
    errors of the leader: both get 3 asks before the ranks decide, the cheaper (extra
    trees, cost 3 against 5) first, SVM none. With folds spread by 0.002, extra trees is
    behind: after the leader's 3, the ranks decide (by seeded draws, which the families
    installed change)."""
    _, space = _space()
    search = TPESearch(space, seed=0, metric="AUC_weighted")
    search.ask(len(space.estimators))
    scores = {"GradientBoosting": 0.93, "ExtremeRandomTrees": 0.915, "SVM": 0.80}
    for r in _told(space, scores):
        s = r.fold_scores["AUC_weighted"][0]
        r.fold_scores["AUC_weighted"] = [s - fold_spread, s, s + fold_spread]
        search.tell(r)
    first = [c.family for c in search.ask(6)]
    if fold_spread > 0.01:
        # the forced tries: the cheaper of the two the folds cannot tell apart, then the
        # leader, SVM none
        assert first == ["ExtremeRandomTrees"] * 3 + ["GradientBoosting"] * 3
    else:
        assert first[:3] == ["GradientBoosting"] * 3
        # no forced tries for extra trees: the ranks' seeded draws decide from the 4th
        later = Counter(first[3:] + [c.family for c in search.ask(40)])
        assert later["GradientBoosting"] > later["ExtremeRandomTrees"]
        assert later["GradientBoosting"] > later["SVM"]


def test_a_used_up_space_is_never_asked_twice_and_ends_the_asks():
    """A decision tree searched over the criterion alone has two points (besides its
    portfolio default). TPE soon proposes only tried ones; the search then asks the
    untried point instead, and once both are tried it asks nothing more. Each ask counts
    once toward the family's forced tries, and a resumed experiment's model-based
    iteration, which this search never asked, counts too."""
    _, space = _space("automl.allowed_models=[DecisionTree]")
    (est,) = space.estimators
    space.estimators[0] = dataclasses.replace(
        est, params={"criterion": {"type": "categorical", "choices": ["gini", "entropy"]}}
    )
    search = TPESearch(space, seed=0, metric="AUC_weighted")
    family = search.families[est.key]
    asked = search.ask(1)
    assert asked[0].origin == "portfolio"
    for k in range(6):
        batch = search.ask(1)
        asked += batch
        for c in batch:
            search.tell(IterationResult(k, c, COMPLETED, {"AUC_weighted": [0.8]}, duration=0.1))
    model_based = [c for c in asked if c.origin == "tpe"]
    assert sorted(c.estimator_params["criterion"] for c in model_based) == ["entropy", "gini"]
    assert len({c.key() for c in asked}) == len(asked) == 3
    assert family.tuned == 2 and family.exhausted
    assert search.ask(2) == []
    # a resumed experiment tells a model-based iteration this search never asked for
    fresh = TPESearch(space, seed=1, metric="AUC_weighted")
    fresh.tell(IterationResult(0, model_based[0], COMPLETED, {"AUC_weighted": [0.8]}))
    assert fresh.families[est.key].tuned == 1


def test_tpe_moves_to_another_family_when_one_space_is_used_up():
    """Two families, one with two points: once those are tried every ask goes to the
    other family, each a new point."""
    _, space = _space("automl.allowed_models=[DecisionTree,LogisticRegression]")
    i = next(k for k, e in enumerate(space.estimators) if e.name == "DecisionTree")
    space.estimators[i] = dataclasses.replace(
        space.estimators[i],
        params={"criterion": {"type": "categorical", "choices": ["gini", "entropy"]}},
    )
    search = TPESearch(space, seed=0, metric="AUC_weighted")
    asked = []
    for k in range(30):
        batch = search.ask(1)
        assert len(batch) == 1
        asked += batch
        # the tree always scores best, so the ranks keep picking it while they can
        good = batch[0].family == "DecisionTree"
        metrics = {"AUC_weighted": [0.9 if good else 0.7]}
        search.tell(IterationResult(k, batch[0], COMPLETED, metrics, duration=0.1))
    assert len({c.key() for c in asked}) == 30
    assert sum(c.family == "DecisionTree" for c in asked) == 3


def test_random_search_never_repeats_and_stops_when_the_space_is_used_up():
    """With one preprocessor and a tree over criterion x max_depth in 2..4 (6 points), the
    random search asks each point once, then nothing."""
    _, space = _space(
        "automl.allowed_models=[DecisionTree]", "search_space/preprocessors=[standard_scaler]"
    )
    space.estimators[0] = dataclasses.replace(
        space.estimators[0],
        params={
            "criterion": {"type": "categorical", "choices": ["gini", "entropy"]},
            "max_depth": {"type": "int", "low": 2, "high": 4, "log": False},
        },
    )
    search = RandomSearch(space, seed=0)
    first = search.ask(4)
    rest = search.ask(4)
    assert len(first) == 4 and len(rest) == 2
    assert len({c.key() for c in first + rest}) == 6
    assert search.ask(1) == []


def test_tpe_learns_within_a_family():
    """Told that small C is good, TPE asks smaller C than it would at random."""
    _, space = _space("automl.allowed_models=[LogisticRegression]")
    search = TPESearch(space, seed=0, metric="AUC_weighted")
    search.ask(1)
    for _ in range(25):
        (c,) = search.ask(1)
        score = 1.0 - abs(np.log10(c.estimator_params["C"]) + 2.0) / 10  # best at C = 0.01
        search.tell(IterationResult(0, c, COMPLETED, {"AUC_weighted": [score]}, duration=0.1))
    late = [np.log10(c.estimator_params["C"]) for c in search.ask(10)]
    early = [np.log10(c.estimator_params["C"]) for c in RandomSearch(space, seed=0).ask(10)]
    assert np.mean(np.abs(np.array(late) + 2)) < np.mean(np.abs(np.array(early) + 2))


def test_tpe_searches_no_scaler_for_trees_and_every_scaler_for_the_rest():
    """A per-feature scaler before a tree changes nothing: TPE keeps the default one for
    tree families (no trial refits one model under another scaler's name) and searches
    the scalers for the others."""
    _, space = _space("automl.allowed_models=[RandomForest,LogisticRegression]")
    search = TPESearch(space, seed=0, metric="AUC_weighted")
    search.ask(2)
    for _ in range(40):
        (c,) = search.ask(1)
        search.tell(IterationResult(0, c, COMPLETED, {"AUC_weighted": [0.9]}, duration=0.1))
    asked = search.ask(40)
    pres = {
        family: {c.preprocessor for c in asked if c.family == family}
        for family in ("RandomForest", "LogisticRegression")
    }
    assert pres["RandomForest"] == {"standard_scaler"}
    assert len(pres["LogisticRegression"]) >= 3
    assert {e.name for e in space.estimators if e.scale_invariant} == {"RandomForest"}


def test_random_search_is_seeded_and_has_no_portfolio():
    _, space = _space()
    a = [c.key() for c in RandomSearch(space, seed=2).ask(20)]
    assert a == [c.key() for c in RandomSearch(space, seed=2).ask(20)]
    assert {c.origin for c in RandomSearch(space, seed=2).ask(5)} == {"random"}


def _zero_to_k(encode_labels: bool) -> str:
    return (
        "++search_space.estimators={zero_to_k: {_target_: automl_test_estimators.ZeroToKClassifier,"
        f" name: ZeroToK, display: zero-to-k, task: classification, encode_labels: {encode_labels}}}}}"
    )


def _rare_string_labels() -> tuple:
    """Breast cancer with string labels and a 2-row third class, which the 5 folds'
    training rows do not all hold (so a fold's labels are not 0..k-1 even if encoded)."""
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.array(["benign", "malignant"], dtype=object)[y]
    labels[[0, 1]] = "rare"
    return X, labels


@pytest.mark.parametrize("encode", [True, False])
def test_a_family_taking_labels_0_to_k_only_is_fitted_behind_a_label_encoder(encode):
    cfg, space = _space(_zero_to_k(encode), "automl.allowed_models=[ZeroToK]")
    X, y = _rare_string_labels()
    data = prepare(Dataset("t", X, y), cfg.automl)
    standardize = next(p for p in space.preprocessors if p.key == "standard_scaler")
    candidate = space.candidate(standardize, space.estimators[0], {}, {}, "test")
    result = run_iteration(0, candidate, data)
    if not encode:  # the same class without the YAML key refuses the labels
        assert result.status != COMPLETED and "expected class labels" in result.error
        return
    assert result.status == COMPLETED, result.error
    assert result.mean("AUC_weighted") > 0.9
    model = refit(candidate, data)
    assert type(model[-1]).__name__ == "VotingClassifier"
    assert list(model.classes_) == ["benign", "malignant", "rare"]
    assert set(model.predict(X)) <= {"benign", "malignant", "rare"}
    inner = model[-1].estimators_[0]
    assert list(inner.classes_) == [0, 1, 2]
    np.testing.assert_allclose(model.predict_proba(X), inner.predict_proba(model[:-1].transform(X)))


def test_xgboost_fits_string_labels_and_a_fold_missing_a_class():
    require_boost("xgboost")
    cfg, space = _space("automl.allowed_models=[XGBoost]")
    X, y = _rare_string_labels()
    data = prepare(Dataset("t", X, y), cfg.automl)
    est = space.estimators[0]
    candidate = space.candidate(space.preprocessors[0], est, {}, est.default, "test")
    result = run_iteration(0, candidate, data)
    assert result.status == COMPLETED, result.error
    assert result.mean("AUC_weighted") > 0.95
    assert set(refit(candidate, data).predict(X[:50])) <= {"benign", "malignant", "rare"}


def _iterations(cfg, space, X, y, n: int, seed: int = 0) -> tuple:
    data = prepare(Dataset("t", X, y), cfg.automl)
    search = TPESearch(space, seed=seed, metric=cfg.automl.primary_metric)
    results = [run_iteration(i, c, data) for i, c in enumerate(search.ask(n))]
    assert all(r.status == COMPLETED for r in results), [r.error for r in results]
    return data, results


def test_ensembles_score_near_chance_on_pure_noise_labels():
    """Members scored on rows they were fitted on, or a stacker scored on its own training
    rows, would look far better than chance. From out-of-fold predictions the ensembles
    stay near it, and the voting selection on those rows adds little to the best member.
    Members no better than chance (the constant prediction) do not join the pool."""
    cfg, space = _space(
        "automl.allowed_models=[RandomForest,ExtremeRandomTrees,KNN,DecisionTree,GradientBoosting]"
    )
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(1000, 8)), rng.integers(0, 2, 1000)
    search = TPESearch(space, seed=1, metric="AUC_weighted")
    data = prepare(Dataset("t", X, y), cfg.automl)
    results = [run_iteration(i, c, data) for i, c in enumerate(search.ask(12))]
    joined = pool(results, data, "AUC_weighted", 10)
    assert [r for r in results if r.mean("AUC_weighted") > 0.5] == joined
    # built from all of them anyway (the pool's floor aside)
    members = sorted(results, key=lambda r: -r.mean("AUC_weighted"))[:10]
    out = [
        run_ensemble(kind, members, data, "AUC_weighted", Selection(20, 20), 12 + i)
        for i, kind in enumerate((VOTING, STACKING))
    ]
    assert [(r.candidate.family, r.status) for r in out] == [
        (VOTING, COMPLETED),
        (STACKING, COMPLETED),
    ]
    for r in out:
        assert abs(r.mean("AUC_weighted") - 0.5) < 0.04, (r.candidate.family, r.fold_scores)
    # the members' own CV scores are honest too, so the ensembles do not beat them by much
    best_member = max(r.mean("AUC_weighted") for r in results)
    assert max(r.mean("AUC_weighted") for r in out) < best_member + 0.05
    assert out[0].mean("AUC_weighted") < best_member + 0.01


def test_voting_weights_average_greedy_selection_over_random_halves_of_the_pool():
    """Five members with independent errors, from the best to the worst, and one with no
    signal: every bag's selection starts from its best member and adds only members that
    help, so the informative members share the weight and the noise gets none."""
    scorer, rng = _binary_scorer(600)
    n = len(scorer.y)
    preds = [_proba(scorer.y + rng.normal(scale=s, size=n)) for s in (1.0, 1.15, 1.3, 1.45, 1.6)]
    preds.append(_proba(rng.normal(size=n)))
    rows = np.arange(n)
    bagged = voting_weights(preds, scorer, Selection(20, 20), seed=0)
    assert bagged[-1] == 0
    assert (bagged[:-1] > 0.05).all(), bagged
    assert bagged.sum() == pytest.approx(1, abs=1e-3)
    assert (voting_weights(preds, scorer, Selection(20, 20), seed=0) == bagged).all()
    assert (voting_weights(preds, scorer, Selection(20, 20), seed=1) != bagged).any()
    # one bag: the whole pool's greedy selection, each member weighted by its share of picks
    counts = greedy_weights(preds, scorer, rows, 20)
    once = voting_weights(preds, scorer, Selection(20, 1), seed=0)
    np.testing.assert_allclose(once, counts / counts.sum(), atol=1e-4)
    assert once[-1] == 0


def test_voting_weights_fall_back_to_one_selection_where_the_bags_score_below_the_best():
    """One member far better than the rest: the bags without it (about half) spread their
    weight over weak members, and that blend scores below the strong member alone. The
    weights are then the whole pool's one selection, which keeps the strong member."""
    scorer, rng = _binary_scorer(600)
    n = len(scorer.y)
    preds = [_proba(scorer.y + rng.normal(scale=s, size=n)) for s in (0.4, 3, 3, 3, 3, 3)]
    weights = voting_weights(preds, scorer, Selection(20, 20), seed=0)
    counts = greedy_weights(preds, scorer, np.arange(n), 20)
    np.testing.assert_allclose(weights, counts / counts.sum(), atol=1e-4)
    assert weights[0] > 0.8, weights
    blend = sum(w * p for w, p in zip(weights, preds, strict=True)) / weights.sum()
    assert scorer.fold_mean(blend) >= scorer.fold_mean(preds[0])


def _binary_scorer(n: int) -> tuple:
    """The scorer of a binary problem's 5-fold out-of-fold rows, and a generator."""
    cfg, _ = _space()
    rng = np.random.default_rng(0)
    data = prepare(Dataset("t", rng.normal(size=(n, 3)), rng.integers(0, 2, n)), cfg.automl)
    return Scorer(data, "AUC_weighted"), rng


def _proba(z: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-z))
    return np.column_stack([1 - p, p])


def test_ensembles_match_their_members_and_refit_to_plain_sklearn():
    cfg, space = _space(
        "automl.allowed_models=[RandomForest,LogisticRegression,KNN,ExtremeRandomTrees]",
        "automl.n_cross_validations=3",
    )
    X, y = load_breast_cancer(return_X_y=True)
    data, results = _iterations(cfg, space, X, y, 6)
    out = ensemble_iterations(
        results, data, "AUC_weighted", voting=True, stacking=True,
        candidates=10, rounds=10, first_iteration=6,
    )  # fmt: skip
    best = max(r.mean("AUC_weighted") for r in results)
    by_kind = {r.candidate.family: r for r in out}
    assert by_kind[VOTING].mean("AUC_weighted") > best - 0.005
    assert [r.iteration for r in out] == [6, 7]
    # the voting ensemble is scored as a search iteration is: its weighted blend of the
    # members' out-of-fold predictions, fold by fold
    from sklearn.metrics import roc_auc_score

    vote = by_kind[VOTING]
    oof = {r.candidate.key(): r.oof for r in results}
    w = np.array(vote.candidate.weights)
    blend = sum(wi * oof[m.key()] for wi, m in zip(w, vote.candidate.members, strict=True))
    blend = blend / w.sum()
    y_oof, start, expected_folds = y[data.oof_rows()], 0, []
    for _, valid in data.splits:
        rows = slice(start, start + len(valid))
        expected_folds.append(roc_auc_score(y_oof[rows], blend[rows][:, 1]))
        start += len(valid)
    np.testing.assert_allclose(vote.fold_scores["AUC_weighted"], expected_folds, rtol=1e-9)
    for r in out:
        model = refit(r.candidate, data)
        assert type(model).__module__.startswith("sklearn.")
        members = [refit(m, data) for m in r.candidate.members]
        proba = [m.predict_proba(X[:50]) for m in members]
        if r.candidate.family == VOTING:
            w = np.array(r.candidate.weights)
            expected = sum(wi * p for wi, p in zip(w, proba, strict=True)) / w.sum()
        else:  # the final estimator sees the members' predictions in our layout
            expected = r.candidate.meta.predict_proba(stack_features(proba, "classification"))
        np.testing.assert_allclose(model.predict_proba(X[:50]), expected, atol=1e-9)


def test_regression_ensembles():
    cfg, space = _space(
        "automl=regression",
        "automl.allowed_models=[RandomForest,ElasticNet,KNN]",
        "automl.n_cross_validations=3",
    )
    X, y = make_friedman1(300, noise=1.0, random_state=0)
    data, results = _iterations(cfg, space, X, y, 5)
    out = ensemble_iterations(
        results, data, "r2_score", voting=True, stacking=True,
        candidates=10, rounds=10, first_iteration=5,
    )  # fmt: skip
    # the stacking ensemble always comes; voting only when selection keeps 2+ members
    assert out[-1].candidate.family == STACKING
    assert all(len(r.candidate.members) >= 2 for r in out)
    for r in out:
        assert len(r.fold_scores["r2_score"]) == 3
        model = refit(r.candidate, data)
        assert model.predict(X[:5]).shape == (5,)


def test_ensembles_on_a_holdout_use_pseudo_folds_of_it():
    cfg, space = _space(
        "automl.allowed_models=[RandomForest,LogisticRegression]",
        "automl.n_cross_validations=null",
        "automl.validation_size=0.3",
    )
    X, y = load_breast_cancer(return_X_y=True)
    data, results = _iterations(cfg, space, X, y, 4)
    out = ensemble_iterations(
        results, data, "AUC_weighted", voting=False, stacking=True,
        candidates=10, rounds=10, first_iteration=4,
    )  # fmt: skip
    assert len(out) == 1 and len(out[0].fold_scores["AUC_weighted"]) == 5


ROWS = 100


def _regression_data(cfg):
    """ROWS rows of a regression problem, for the pool's floor (the constant's R^2)."""
    rng = np.random.default_rng(0)
    return prepare(Dataset("t", rng.normal(size=(ROWS, 2)), rng.normal(size=ROWS)), cfg.automl)


def _scored(space, scores: dict[str, list[float]]) -> list[IterationResult]:
    """Regression results: for each family, one iteration per score (distinct params)."""
    by_name = {e.name: e for e in space.estimators}
    out = []
    for family, values in scores.items():
        est = by_name[family]
        for k, s in enumerate(values):
            c = space.candidate(space.preprocessors[0], est, {"tag": k}, est.default, "test")
            r = IterationResult(len(out), c, COMPLETED, {"r2_score": [s]}, duration=1.0)
            r.oof = np.full(ROWS, float(len(out)))
            out.append(r)
    return out


def test_the_ensemble_pool_holds_the_best_of_each_family_then_the_best_of_the_rest():
    """A search converged on one family would otherwise pool near-copies of it. A family
    no better than the constant prediction (a diverged SGD) does not join at all."""
    cfg, space = _space("automl=regression")
    results = _scored(
        space,
        {
            "RandomForest": [0.9, 0.89, 0.88, 0.87, 0.86],
            "KNN": [0.5, 0.4],
            "ElasticNet": [0.7],
            "SGD": [-5.0],
        },
    )
    data = _regression_data(cfg)
    names = [(r.candidate.family, r.mean("r2_score")) for r in pool(results, data, "r2_score", 5)]
    # best first; the leaders of KNN and ElasticNet are in, the second KNN is not
    assert names == [
        ("RandomForest", 0.9), ("RandomForest", 0.89), ("RandomForest", 0.88),
        ("ElasticNet", 0.7), ("KNN", 0.5),
    ]  # fmt: skip
    assert [r.candidate.family for r in pool(results, data, "r2_score", 2)] == [
        "RandomForest",
        "ElasticNet",
    ]
    # only the predictions the pool may need are kept in memory
    record = Record(None, "r2_score", keep_predictions=2)  # no tracker: nothing is logged
    record.results.extend(results)
    record._drop_predictions()
    kept = sorted(r.mean("r2_score") for r in results if r.oof is not None)
    assert kept == [-5.0, 0.5, 0.7, 0.87, 0.88, 0.89, 0.9]


def test_a_time_budget_keeps_the_refit_of_the_ensembles_members_for_after_the_search():
    """finishing_seconds: what the search leaves of experiment_timeout_minutes."""
    cfg, space = _space("automl=regression", "automl.ensemble_candidates=3")
    X, y = make_friedman1(100, random_state=0)
    data = prepare(Dataset("t", X, y), cfg.automl)  # 5-fold CV: a refit is 1/4 of them
    assert finishing_seconds([], data, cfg.automl, slots=2) == 0.0
    results = _scored(space, {"RandomForest": [0.9, 0.8], "KNN": [0.5], "ElasticNet": [0.7]})
    for r, seconds in zip(results, [16.0, 400.0, 12.0, 8.0], strict=True):
        r.duration = seconds
    fixed = RESTART_SECONDS + LOG_SECONDS + EVALUATION_SECONDS
    # the pool of 3: the best forest and each family's leader, 2 refits at a time; the
    # 400 s forest is not in it
    ensembles = finishing_seconds(results, data, cfg.automl, slots=2)
    assert ensembles == pytest.approx((16 + 12 + 8) / 4 / 2 + 2.0 + fixed)
    # one slot: one after the other; the slowest member alone bounds it from below
    assert finishing_seconds(results, data, cfg.automl, slots=1) == pytest.approx(
        (16 + 12 + 8) / 4 + 2.0 + fixed
    )
    assert finishing_seconds(results, data, cfg.automl, slots=8) == pytest.approx(
        16 / 4 + 2.0 + fixed
    )
    # the run's measured cold start of a worker replaces RESTART_SECONDS when longer
    slow_start = finishing_seconds(results, data, cfg.automl, slots=8, restart=5.0)
    assert slow_start == pytest.approx(16 / 4 + 2.0 + 5.0 + LOG_SECONDS + EVALUATION_SECONDS)
    quick_start = finishing_seconds(results, data, cfg.automl, slots=8, restart=0.1)
    assert quick_start == pytest.approx(16 / 4 + 2.0 + fixed)
    # without ensembles only the best is refit; failed iterations count for nothing
    off = typed(
        ["automl=regression", "automl.enable_voting_ensemble=false",
         "automl.enable_stack_ensemble=false"]
    ).automl  # fmt: skip
    failed = IterationResult(9, results[0].candidate, "FAILED", duration=1000.0)
    assert finishing_seconds(results + [failed], data, off, slots=2) == pytest.approx(
        16 / 4 + fixed
    )
    # a 25% holdout: the refit is the one fit on 3/4 of the rows, scaled to all of them
    holdout, _ = _space(
        "automl=regression", "automl.n_cross_validations=null", "automl.validation_size=0.25"
    )
    held = prepare(Dataset("t", X, y), holdout.automl)
    assert finishing_seconds(results, held, off, slots=2) == pytest.approx(16 / 0.75 + fixed)
