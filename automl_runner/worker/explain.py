"""SHAP explanations of the best pipeline, in engineered features and in the user's columns.

The estimator is explained on the features it sees (after imputation, encoding and
scaling); values of engineered columns are then summed back to the raw column they came
from (one-hot columns and missing-value indicators to their source), which keeps the
explanation additive. ``explain_pipeline`` is a pure function: it runs in a Ray task.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .features import feature_sources, model_input, split_pipeline, transform

TREE_FAMILIES = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "LGBMClassifier",
    "LGBMRegressor",
    "XGBClassifier",
    "XGBRegressor",
    "CatBoostClassifier",
    "CatBoostRegressor",
)
# tree models whose trees add up margins (log-odds), not probabilities
BOOSTERS = ("GradientBoosting", "LGBM", "XGB", "CatBoost")


@dataclass
class Member:
    """One ensemble member's explanation and its part in the ensemble's: the ensemble's
    output is the sum over members of `coefficients` @ the member's output (+ a constant)."""

    name: str
    explanation: Explanation
    # (ensemble outputs, member outputs)
    coefficients: np.ndarray


@dataclass
class Explanation:
    """The seed's six outputs plus what is needed to read and check them."""

    explainer: str
    # which model output the values add up to: probability, log-odds, decision_function, prediction
    output: str
    # class labels for classification (one explanation per class), None for regression
    classes: list[str] | None
    raw_names: list[str]
    engineered_names: list[str]
    # for each engineered feature, the raw column it came from
    source: list[str]
    # (outputs, rows, engineered features)
    shap_engineered: np.ndarray
    # (outputs,)
    expected: np.ndarray
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    # the model explained, e.g. "Pipeline of StandardScaler, SVC" or "VotingClassifier of
    # iteration_3, iteration_7"; an ensemble's members' own explanations, on the same rows
    model: str = ""
    members: list[Member] = field(default_factory=list)

    @property
    def shap_raw(self) -> np.ndarray:
        """(outputs, rows, raw columns): engineered values summed per source column."""
        index = {name: i for i, name in enumerate(self.raw_names)}
        out = np.zeros(self.shap_engineered.shape[:2] + (len(self.raw_names),))
        for j, src in enumerate(self.source):
            out[:, :, index[src]] += self.shap_engineered[:, :, j]
        return out

    def overall(self, raw: bool = True) -> tuple[list[float], list[str]]:
        """overall_summary (mean |SHAP| per feature, descending) and overall_imp (names)."""
        values = self.shap_raw if raw else self.shap_engineered
        names = self.raw_names if raw else self.engineered_names
        # mean over rows of the absolute value, summed over classes
        imp = np.abs(values).mean(axis=1).sum(axis=0)
        order = np.argsort(-imp, kind="stable")
        return [float(imp[i]) for i in order], [names[i] for i in order]

    def per_class(
        self, raw: bool = True
    ) -> tuple[list[list[float]], list[list[str]]] | tuple[None, None]:
        """per_class_summary and per_class_imp: the same ranking within each class."""
        if self.classes is None:
            return None, None
        values = self.shap_raw if raw else self.shap_engineered
        names = self.raw_names if raw else self.engineered_names
        summaries, imps = [], []
        for k in range(values.shape[0]):
            imp = np.abs(values[k]).mean(axis=0)
            order = np.argsort(-imp, kind="stable")
            summaries.append([float(imp[i]) for i in order])
            imps.append([names[i] for i in order])
        return summaries, imps


def _choose(model: Any, requested: str, task: str, space: str | None) -> str:
    """The explainer for `model`; with `space`, one whose values add up to that output
    (an ensemble's member must be explained in the output the ensemble combines)."""
    chosen = requested if requested != "auto" else _natural(model)
    if space is None or output_kind(model, chosen, task) == space:
        return chosen
    if requested != "auto":
        raise ValueError(
            f"explain.explainer={requested} explains the {output_kind(model, chosen, task)} "
            f"of {type(model).__name__}; an ensemble's members are explained in {space}"
        )
    return "kernel"  # on predict_proba (the pool's members have it) or predict


def explainer_for(pipeline: Any, task: str, space: str, requested: str = "auto") -> str:
    """The explainer a fitted pipeline's estimator gets for values in `space` when
    `requested` (explain.explainer) is asked for."""
    _, model = split_pipeline(pipeline)
    return _choose(model, requested, task, space)


# explainers that call the model per row, each row's values independent of the others',
# and how many rows they explain unless told (explain.kernel_rows)
MODEL_AGNOSTIC = ("kernel", "permutation")
AGNOSTIC_ROWS = 30


def cut_note(explainer: str, kept: int, total: int) -> str:
    """The note of a model-agnostic explainer that explained only the first rows."""
    return f"{explainer} explainer: explained the first {kept} of {total} rows"


def _natural(model: Any) -> str:
    if type(model).__name__ in TREE_FAMILIES:
        return "tree"
    if hasattr(model, "coef_") and hasattr(model, "intercept_"):
        return "linear"
    return "kernel"


def output_kind(model: Any, explainer: str, task: str) -> str:
    """Which output of the model the SHAP values of this explainer add up to."""
    if task == "regression":
        return "prediction"
    name = type(model).__name__
    if explainer == "tree":
        return "log-odds" if any(b in name for b in BOOSTERS) else "probability"
    if explainer == "linear":
        return "decision_function"
    return "probability" if hasattr(model, "predict_proba") else "decision_function"


def model_output(pipeline: Any, X: Any, output: str) -> np.ndarray:
    """(outputs, rows) values of `output` for raw rows X; what the explanation adds up to."""
    _, model = split_pipeline(pipeline)
    Z = transform(pipeline, X)
    return estimator_output(model, Z, output)


def estimator_output(model: Any, Z: np.ndarray, output: str) -> np.ndarray:
    Z = model_input(model, Z)
    if output == "prediction":
        return np.asarray(model.predict(Z), dtype=float)[None, :]
    if output == "probability":
        return np.asarray(model.predict_proba(Z)).T
    d = _margin(model, Z)
    if d.ndim == 1:  # binary: one margin for the positive class; the negative is its mirror
        return np.vstack([-d, d])
    return d.T


def _margin(model: Any, Z: np.ndarray) -> np.ndarray:
    """The model's raw margin (log-odds) or decision function, what its trees or its
    linear part add up: scikit-learn's decision_function, or the boosting library's own
    raw-score switch."""
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(Z))
    library = type(model).__module__.split(".")[0]
    if library == "lightgbm":
        return np.asarray(model.predict(Z, raw_score=True))
    if library == "xgboost":
        return np.asarray(model.predict(Z, output_margin=True))
    if library == "catboost":
        return np.asarray(model.predict(Z, prediction_type="RawFormulaVal"))
    raise TypeError(f"{type(model).__name__} gives no margin (no decision_function)")


def shap_nsamples(columns: int) -> int:
    """The kernel explainer's own number of coalitions per row ("auto"), its most."""
    return 2 * columns + 2048


def _as_outputs(
    values: Any, expected: Any, n_rows: int, n_features: int
) -> tuple[np.ndarray, np.ndarray]:
    """SHAP's shapes -> (outputs, rows, features) and (outputs,); binary single output mirrored."""
    v = np.asarray(values, dtype=float)
    e = np.atleast_1d(np.asarray(expected, dtype=float))
    if isinstance(values, list):
        v = np.stack([np.asarray(x, dtype=float) for x in values])
    elif v.ndim == 3:
        v = np.moveaxis(v, 2, 0)
    elif v.ndim == 2:
        v = v[None]
    assert v.shape[1:] == (n_rows, n_features), v.shape
    if e.size == 1 and v.shape[0] == 1:
        e = e.reshape(1)
    return v, e


def explain_pipeline(
    pipeline: Any,
    X_rows: Any,
    X_background: Any,
    *,
    task: str,
    classes: list[Any] | None,
    raw_names: list[str],
    explainer: str = "auto",
    background_size: int = 100,
    kernel_kmeans: int = 10,
    kernel_rows: int = AGNOSTIC_ROWS,
    kernel_nsamples: int | None = 1024,
    seed: int = 0,
    space: str | None = None,
) -> Explanation:
    """Explain the pipeline's final estimator on X_rows; see the module docstring.

    `space` (probability, prediction) asks for values that add up to that output, whatever
    the estimator: `auto` then uses the kernel explainer where the natural one would not.
    """
    import warnings

    import shap

    start = time.perf_counter()
    _, model = split_pipeline(pipeline)
    Z = transform(pipeline, X_rows)
    Zb = transform(pipeline, background_rows(X_background, background_size, seed))
    names, sources = feature_sources(pipeline, raw_names)
    notes: list[str] = []
    chosen = _choose(model, explainer, task, space)
    values = expected = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if chosen == "tree":
            try:
                ex = shap.TreeExplainer(model)
                values, expected = ex.shap_values(model_input(model, Z)), ex.expected_value
            except Exception as err:  # e.g. multiclass GradientBoostingClassifier
                if explainer != "auto":
                    raise
                notes.append(
                    f"tree explainer refused {type(model).__name__} ({str(err).splitlines()[0][:200]}); used kernel"
                )
                chosen = "kernel"
        if chosen == "linear":
            ex = shap.LinearExplainer(model, Zb)
            values, expected = ex.shap_values(Z), ex.expected_value
        output = output_kind(model, chosen, task)
        if chosen in MODEL_AGNOSTIC:
            # model-agnostic explainers call the model thousands of times per row
            if Z.shape[0] > kernel_rows:
                notes.append(cut_note(chosen, kernel_rows, Z.shape[0]))
                Z = Z[:kernel_rows]

            def f(data: np.ndarray) -> np.ndarray:
                return estimator_output(model, np.asarray(data, dtype=float), output).T

            if chosen == "kernel":
                k = min(kernel_kmeans, Zb.shape[0])
                ex = shap.KernelExplainer(f, shap.kmeans(Zb, k) if k < Zb.shape[0] else Zb)
                np.random.seed(
                    seed
                )  # the kernel explainer samples coalitions with numpy's global RNG
                nsamples = (
                    "auto"
                    if kernel_nsamples is None
                    else min(kernel_nsamples, shap_nsamples(Z.shape[1]))
                )
                values, expected = (
                    ex.shap_values(Z, silent=True, nsamples=nsamples),
                    ex.expected_value,
                )
            else:
                ex = shap.PermutationExplainer(f, Zb, seed=seed)
                result = ex(Z, silent=True)
                values, expected = result.values, result.base_values[0]
    v, e = _as_outputs(values, expected, Z.shape[0], Z.shape[1])
    if task == "classification" and v.shape[0] == 1:  # binary margin: mirror for class 0
        v, e = np.concatenate([-v, v]), np.concatenate([-e, e])
    return Explanation(
        explainer=chosen,
        output=output,
        classes=None if classes is None else [str(c) for c in classes],
        raw_names=list(raw_names),
        engineered_names=names,
        source=sources,
        shap_engineered=v,
        expected=e,
        seconds=time.perf_counter() - start,
        notes=notes,
        model=described(pipeline),
    )


def background_rows(X: Any, size: int, seed: int) -> Any:
    """The explainer's background: a seeded sample of `size` rows of X, in X's order (all
    of X when it has no more; sampling a sample of that size gives it back unchanged)."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(X.shape[0], min(size, X.shape[0]), replace=False))
    return X.iloc[idx] if isinstance(X, pd.DataFrame) else X[idx]


def described(pipeline: Any) -> str:
    """The pipeline's steps by class, as the explanation names the model it explains."""
    return "Pipeline of " + ", ".join(type(step).__name__ for _, step in pipeline.steps)


def raw_names(X: Any) -> list[str]:
    """The user's column names (x0, x1, ... for arrays without names)."""
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    return [f"x{i}" for i in range(X.shape[1])]
