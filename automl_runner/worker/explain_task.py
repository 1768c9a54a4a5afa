"""The explanation task: the rows explained, and the model explained, which is the one the
user gets: one pipeline (``explain``), or a voting or stacking ensemble through its members
(``explain_ensemble``). ``explain_best`` runs in a Ray task of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..records import PreparedData
from .explain import Explanation, explain_pipeline, raw_names, shap_nsamples
from .explain_ensemble import (
    Mapper,
    explain_ensemble,
    is_ensemble,
    kernel_cost,
    leading_member,
    members_of,
)
from .pipeline import take_rows


def model_to_explain(
    model: Any,
    rows: Any,
    background: Any,
    task: str,
    options: dict[str, Any],
    price: Callable[[Any, Any, str], tuple[float, int]] = kernel_cost,
) -> tuple[Any, str | None, dict[str, Any]]:
    """(what is explained, a note when it is not what was asked, the explainer options).

    explain.ensemble=auto explains a winning ensemble itself, its kernel members' work
    bounded by explain.ensemble_kernel_seconds: priced per row before it starts
    (kernel_cost), they get fewer coalitions per row than explain.kernel_nsamples when
    needed (additivity holds at any number; the values are noisier), but never fewer
    than 2 x columns + 2 (each column alone, and all but it). Under that floor the
    leading member is explained instead, and the note says why. `always` explains the
    ensemble unbounded, `leading` its leading member. `price`: kernel_cost, measured.
    """
    mode = options.pop("ensemble", "auto")
    bound = options.pop("ensemble_kernel_seconds", None)
    if not is_ensemble(model) or mode == "always":
        return model, None, options
    why = "explain.ensemble=leading"
    if mode == "auto":
        per_row, width = price(model, background, task)
        if per_row == 0.0:
            return model, None, options
        explained = min(rows.shape[0], options["kernel_rows"])
        asked = min(options["kernel_nsamples"] or shap_nsamples(width), shap_nsamples(width))
        per_sample = per_row * options["kernel_kmeans"] * explained
        affordable = int(bound / per_sample) if bound is not None else asked
        if affordable >= asked:
            return model, None, options
        floor = 2 * width + 2
        if affordable >= floor:
            note = (
                f"kernel explainer on the ensemble's members: {affordable} coalitions per row "
                f"of explain.kernel_nsamples={asked}, to keep their work near "
                f"explain.ensemble_kernel_seconds={bound:g} (priced at "
                f"{per_sample * asked:.0f} s for {asked})"
            )
            return model, note, {**options, "kernel_nsamples": affordable}
        why = (
            f"its members' kernel explanation is priced at {per_sample * floor:.0f} s at "
            f"the least ({floor} coalitions per row), over "
            f"explain.ensemble_kernel_seconds={bound:g}; explain.ensemble=always explains "
            "the ensemble"
        )
    pipeline, name = leading_member(model)
    return (
        pipeline,
        f"the best model is a {type(model).__name__} of {len(members_of(model))} pipelines; "
        f"explained: its leading member {name} ({why})",
        options,
    )


def explain_best(
    model: Any, data: PreparedData, settings: dict[str, Any], mapper: Mapper | None = None
) -> tuple[Any, Any]:
    """(Explanation, the raw rows it explains) for the refit best model.

    `settings`: `rows` (how many to explain) plus explain_pipeline's keyword arguments;
    `mapper` runs an ensemble's members' explanations (in parallel tasks on Ray).
    """
    options = dict(settings)
    wanted = options.pop("rows")
    source = data.X_valid if data.X_valid is not None else data.X
    n = source.shape[0]
    rng = np.random.default_rng(data.seed)
    idx = np.arange(n) if n <= wanted else np.sort(rng.choice(n, wanted, replace=False))
    rows = take_rows(source, idx)
    target, note, options = model_to_explain(model, rows, data.X, data.task, options)
    if is_ensemble(target):
        options["mapper"] = mapper
    explain = explain_ensemble if is_ensemble(target) else explain_pipeline
    explanation: Explanation = explain(
        target,
        rows,
        data.X,
        task=data.task,
        classes=None if data.classes is None else list(data.classes),
        raw_names=raw_names(data.X),
        seed=data.seed,
        **options,
    )
    if note is not None:
        explanation.notes.insert(0, note)
    return explanation, take_rows(rows, np.arange(explanation.shap_engineered.shape[1]))
