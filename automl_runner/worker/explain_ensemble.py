"""SHAP values of a voting or stacking ensemble, the model the user gets, from its members'.

Each member is explained on its own features in its output space (probabilities for
classification, the prediction for regression), on the same rows against the same
background. An ensemble that is linear in those outputs has as SHAP values the same linear
combination of its members' (SHAP values are linear in the model), so the explanation stays
exact:

- voting: the weighted mean of the members' probabilities (or predictions); its values are
  in probability space, expected value + SHAP values = ``predict_proba``;
- stacking with a linear final estimator (the runner's ``LogisticRegression`` or ``RidgeCV``
  on the members' outputs): its coefficients combine the members' values in its link
  space, expected value + SHAP values = ``final_estimator_.decision_function`` (log-odds)
  or the prediction;
- any other final estimator: the kernel explainer on the whole ensemble's
  ``predict_proba`` (or ``predict``), in the user's numeric columns, with the explain
  group's rows, background and sample settings.

The combined values are kept per member and engineered feature (``iteration_3/x5``), each
sourced to its user column, so both views of ``Explanation`` add up; the user-column view
is then the sum across members. docs/ensembles.md#explanation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .explain import (
    AGNOSTIC_ROWS,
    MODEL_AGNOSTIC,
    Explanation,
    Member,
    background_rows,
    cut_note,
    estimator_output,
    explain_pipeline,
    explainer_for,
)
from .features import split_pipeline, transform
from .pipeline import take_rows

# rows each kernel member predicts to measure its cost per row
PROBE_ROWS = 1000
# a model-agnostic member's rows are explained in this many tasks (each row's values are
# its own): explained whole, one slow member held the explanation on one CPU while the
# other idled (digits' seed run: a 10-class LightGBM took 14.8 s of 25 s of members'
# work, 17.8 s from start to end on 2 CPUs)
ROW_TASKS = 4

# runs explain_pipeline once per keyword set, results in that order: in this process by
# default, or as parallel tasks (the engine passes its own, engine.ray_executor.ray_map)
Mapper = Callable[[Callable[..., Explanation], list[dict[str, Any]]], list[Explanation]]


def serial_map(fn: Callable[..., Explanation], calls: list[dict[str, Any]]) -> list[Explanation]:
    return [fn(**kwargs) for kwargs in calls]


def member_space(task: str) -> str:
    """The output members are explained in, the one a voting ensemble averages."""
    return "prediction" if task == "regression" else "probability"


def is_ensemble(model: Any) -> bool:
    """A fitted Voting*/Stacking* ensemble (not a pipeline, whose last step may be the
    one-member VotingClassifier of ``encode_labels``)."""
    from sklearn.pipeline import Pipeline

    return hasattr(model, "named_estimators_") and not isinstance(model, Pipeline)


def members_of(model: Any) -> list[tuple[str, Any]]:
    """(name, fitted pipeline) of each member, in order; FrozenEstimator looked through."""
    return [(name, getattr(m, "estimator", m)) for name, m in model.named_estimators_.items()]


def _stacking(model: Any) -> bool:
    return hasattr(model, "final_estimator_")


def _linear_final(model: Any) -> bool:
    final = model.final_estimator_
    return hasattr(final, "coef_") and hasattr(final, "intercept_")


def kernel_members(model: Any, task: str) -> int:
    """How many of the ensemble's members need the kernel explainer for exact values."""
    if _stacking(model) and not _linear_final(model):
        return len(members_of(model))  # the whole ensemble goes through the kernel explainer
    space = member_space(task)
    return sum(explainer_for(p, task, space) == "kernel" for _, p in members_of(model))


def kernel_cost(model: Any, X_background: Any, task: str) -> tuple[float, int]:
    """(seconds per row the ensemble's kernel members take together to predict in the
    ensemble's output space, the most engineered columns among them); (0, 0) when none
    needs the kernel explainer.

    The kernel explainer asks each member for rows x coalitions x background centres
    predictions, so this rate prices a whole explanation before it starts."""
    space = member_space(task)
    probe = take_rows(X_background, np.resize(np.arange(X_background.shape[0]), PROBE_ROWS))
    seconds, width = 0.0, 0
    for _, pipeline in members_of(model):
        if explainer_for(pipeline, task, space) != "kernel":
            continue
        Z = transform(pipeline, probe)
        estimator = split_pipeline(pipeline)[1]
        # the fastest of a few probes, for a fast member, where one is mostly noise
        took: list[float] = []
        while len(took) < 3 and sum(took) < 0.2:
            start = time.perf_counter()
            estimator_output(estimator, Z, space)
            took.append(time.perf_counter() - start)
        seconds += min(took) / PROBE_ROWS
        width = max(width, Z.shape[1])
    return seconds, width


def leading_member(model: Any) -> tuple[Any, str]:
    """(the member with the largest weight, its name); ties go to the first (the best)."""
    members = members_of(model)
    weights = getattr(model, "weights", None) or [1.0] * len(members)
    name, pipeline = members[int(np.argmax(weights))]
    return pipeline, name


def combination(model: Any, task: str) -> tuple[list[np.ndarray], np.ndarray, str]:
    """(each member's coefficients, the constant, the output): ensemble output =
    constant + sum over members of coefficients @ member output, for a voting ensemble or
    a stacking ensemble with a linear final estimator. Binary classification: one output
    row, the positive class (the caller mirrors it)."""
    members = members_of(model)
    if not _stacking(model):
        weights = np.asarray(model.weights or [1.0] * len(members), dtype=float)
        weights = weights / weights.sum()
        n_out = 1 if task == "regression" else len(model.classes_)
        eye = np.eye(n_out)
        return (
            [w * eye for w in weights],
            np.zeros(n_out),
            member_space(task),
        )
    final = model.final_estimator_
    coef = np.atleast_2d(np.asarray(final.coef_, dtype=float))
    intercept = np.atleast_1d(np.asarray(final.intercept_, dtype=float))
    n_classes = 1 if task == "regression" else len(model.classes_)
    # the stacker's features as scikit-learn lays them out: per member its prediction,
    # its positive-class probability (binary), or all its class probabilities
    used = [0] if n_classes == 1 else ([1] if n_classes == 2 else list(range(n_classes)))
    member_outputs = 1 if n_classes == 1 else n_classes
    parts, offset = [], 0
    for _ in members:
        A = np.zeros((coef.shape[0], member_outputs))
        A[:, used] = coef[:, offset : offset + len(used)]
        parts.append(A)
        offset += len(used)
    assert offset == coef.shape[1], (offset, coef.shape)
    return parts, intercept, "prediction" if task == "regression" else "log-odds"


def ensemble_output(model: Any, X: Any, task: str) -> np.ndarray:
    """(outputs, rows): the output of the ensemble its explanation adds up to."""
    if task == "regression":
        return np.asarray(model.predict(X), dtype=float)[None, :]
    if not (_stacking(model) and _linear_final(model)):
        return np.asarray(model.predict_proba(X)).T
    d = np.asarray(model.final_estimator_.decision_function(model.transform(X)))
    return np.vstack([-d, d]) if d.ndim == 1 else d.T


def explain_ensemble(
    model: Any,
    X_rows: Any,
    X_background: Any,
    *,
    task: str,
    classes: list[Any] | None,
    raw_names: list[str],
    mapper: Mapper | None = None,
    **options: Any,
) -> Explanation:
    """The ensemble's explanation in the user's columns; see the module docstring.
    `options`: explain_pipeline's keyword arguments (explainer, background, kernel ones);
    `mapper` runs the members' explanations (serial_map: one after another here)."""
    start = time.perf_counter()
    names = [name for name, _ in members_of(model)]
    described = f"{type(model).__name__} of {', '.join(names)}"
    if _stacking(model) and not _linear_final(model):
        e = _whole(
            model, X_rows, X_background, task=task, classes=classes, raw_names=raw_names, **options
        )
    else:
        e = _from_members(
            model,
            X_rows,
            X_background,
            task=task,
            classes=classes,
            raw_names=raw_names,
            mapper=mapper or serial_map,
            **options,
        )
    e.model, e.seconds = described, time.perf_counter() - start
    return e


def _from_members(
    model: Any,
    X_rows: Any,
    X_background: Any,
    *,
    task: str,
    classes: list[Any] | None,
    raw_names: list[str],
    mapper: Mapper,
    **options: Any,
) -> Explanation:
    space = member_space(task)
    parts, constant, output = combination(model, task)
    # every member against the same background rows, sampled once (what each would pick)
    background = background_rows(
        X_background, options.pop("background_size", 100), options.get("seed", 0)
    )
    calls: list[dict[str, Any]] = []
    # per member, how many row chunks its calls are, in row order; None: one call, whole
    pieces: list[int | None] = []
    requested = options.get("explainer", "auto")
    for _, pipeline in members_of(model):
        call = dict(
            pipeline=pipeline,
            X_rows=X_rows,
            X_background=background,
            background_size=background.shape[0],
            task=task,
            classes=classes,
            raw_names=raw_names,
            space=space,
            **options,
        )
        if explainer_for(pipeline, task, space, requested) not in MODEL_AGNOSTIC:
            pieces.append(None)
            calls.append(call)
            continue
        kept = min(X_rows.shape[0], options.get("kernel_rows", AGNOSTIC_ROWS))
        chunks = np.array_split(np.arange(kept), min(ROW_TASKS, kept))
        pieces.append(len(chunks))
        calls.extend({**call, "X_rows": take_rows(X_rows, idx)} for idx in chunks)
    done = iter(mapper(explain_pipeline, calls))
    explained = [
        next(done) if p is None else _joined([next(done) for _ in range(p)], X_rows.shape[0])
        for p in pieces
    ]
    members = [
        Member(name, e, A)
        for (name, _), e, A in zip(members_of(model), explained, parts, strict=True)
    ]
    # a model-agnostic explainer explains only the first rows; each row's values do not
    # depend on the others', so every member is cut to the rows all of them explained
    n = min(m.explanation.shap_engineered.shape[1] for m in members)
    values = [
        np.einsum("ck,krf->crf", m.coefficients, m.explanation.shap_engineered[:, :n])
        for m in members
    ]
    expected = constant + sum(m.coefficients @ m.explanation.expected for m in members)
    v, ev = np.concatenate(values, axis=2), np.asarray(expected, dtype=float)
    if task == "classification" and v.shape[0] == 1:  # binary margin: mirror for class 0
        v, ev = np.concatenate([-v, v]), np.concatenate([-ev, ev])
    for m in members:
        m.explanation.shap_engineered = m.explanation.shap_engineered[:, :n]
    notes = [f"{m.name}: {note}" for m in members for note in m.explanation.notes]
    kinds = sorted({m.explanation.explainer for m in members})
    return Explanation(
        explainer="+".join(kinds),
        output=output,
        classes=None if classes is None else [str(c) for c in classes],
        raw_names=list(raw_names),
        engineered_names=[f"{m.name}/{f}" for m in members for f in m.explanation.engineered_names],
        source=[s for m in members for s in m.explanation.source],
        shap_engineered=v,
        expected=ev,
        notes=[
            f"the ensemble's values are its members' combined ({_how(model, output)})",
            *notes,
        ],
        members=members,
    )


def _joined(parts: list[Explanation], total: int) -> Explanation:
    """A model-agnostic member's explanation from those of its consecutive row chunks,
    the first `sum of their rows` of `total` rows."""
    whole = parts[0]
    whole.shap_engineered = np.concatenate([p.shap_engineered for p in parts], axis=1)
    whole.seconds = sum(p.seconds for p in parts)
    kept = whole.shap_engineered.shape[1]
    if kept < total:
        whole.notes.insert(0, cut_note(whole.explainer, kept, total))
    return whole


def _how(model: Any, output: str) -> str:
    if not _stacking(model):
        return f"weighted by the voting weights, in {output}"
    final = type(model.final_estimator_).__name__
    return f"through the {final} final estimator's coefficients, in its {output}"


class _Framed:
    """The whole ensemble as one model on arrays of the user's columns (what the kernel
    explainer passes it), given back to the ensemble as a frame with their names."""

    def __init__(self, model: Any, names: list[str] | None) -> None:
        self.model, self.names = model, names

    def _frame(self, Z: np.ndarray) -> Any:
        return Z if self.names is None else pd.DataFrame(Z, columns=self.names)

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(self._frame(Z)))

    def predict(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(self._frame(Z)))


def _whole(
    model: Any,
    X_rows: Any,
    X_background: Any,
    *,
    task: str,
    classes: list[Any] | None,
    raw_names: list[str],
    **options: Any,
) -> Explanation:
    """The kernel explainer on the ensemble itself (its outputs in probability space):
    for a final estimator whose output is not linear in its members'."""
    from sklearn.pipeline import Pipeline

    numeric = not isinstance(X_rows, pd.DataFrame) or all(
        pd.api.types.is_numeric_dtype(t) for t in X_rows.dtypes
    )
    if not numeric:
        raise ValueError(
            f"a {type(model).__name__} with a {type(model.final_estimator_).__name__} final "
            "estimator is explained by the kernel explainer on the user's columns, which "
            "must then all be numeric"
        )
    names = list(X_rows.columns) if isinstance(X_rows, pd.DataFrame) else None
    options["explainer"] = "kernel"
    e = explain_pipeline(
        Pipeline([("model", _Framed(model, names))]),
        X_rows,
        X_background,
        task=task,
        classes=classes,
        raw_names=raw_names,
        **options,
    )
    e.notes.insert(
        0,
        f"the final estimator {type(model.final_estimator_).__name__} is not linear: "
        "the kernel explainer explained the whole ensemble",
    )
    return e
