"""The explanation task: the rows explained, and the model explained, which is the one the
user gets: one pipeline (``explain``), or a voting or stacking ensemble through its members
(``explain_ensemble``). ``explain_best`` runs in a Ray task of its own."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..records import PreparedData
from .explain import Explanation, explain_pipeline, raw_names
from .explain_ensemble import (
    explain_ensemble,
    is_ensemble,
    kernel_members,
    leading_member,
    members_of,
)
from .pipeline import take_rows

# explain.ensemble=auto explains a winning ensemble itself unless some of its members need
# the kernel explainer on more columns than this (digits' 64: about a minute per member
# with 2 CPUs); it then explains the leading member, and says so
ENSEMBLE_KERNEL_COLUMNS = 32


def model_to_explain(model: Any, task: str, columns: int, mode: str) -> tuple[Any, str | None]:
    """(what is explained, a note when it is not the model the user gets)."""
    if not is_ensemble(model) or mode == "always":
        return model, None
    kernel = kernel_members(model, task)
    if mode == "auto" and (kernel == 0 or columns <= ENSEMBLE_KERNEL_COLUMNS):
        return model, None
    pipeline, name = leading_member(model)
    why = (
        "explain.ensemble=leading"
        if mode == "leading"
        else f"{kernel} member(s) need the kernel explainer on {columns} columns "
        f"(over {ENSEMBLE_KERNEL_COLUMNS}; explain.ensemble=always explains the ensemble)"
    )
    return pipeline, (
        f"the best model is a {type(model).__name__} of {len(members_of(model))} pipelines; "
        f"explained: its leading member {name} ({why})"
    )


def explain_best(model: Any, data: PreparedData, settings: dict[str, Any]) -> tuple[Any, Any]:
    """(Explanation, the raw rows it explains) for the refit best model.

    `settings`: `rows` (how many to explain) plus explain_pipeline's keyword arguments.
    """
    options = dict(settings)
    wanted = options.pop("rows")
    mode = options.pop("ensemble", "auto")
    source = data.X_valid if data.X_valid is not None else data.X
    n = source.shape[0]
    rng = np.random.default_rng(data.seed)
    idx = np.arange(n) if n <= wanted else np.sort(rng.choice(n, wanted, replace=False))
    rows = take_rows(source, idx)
    target, note = model_to_explain(model, data.task, rows.shape[1], mode)
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
