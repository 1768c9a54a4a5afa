"""The explanation task: the rows explained, and the model explained, which is the one the
user gets: one pipeline (``explain``), or a voting or stacking ensemble through its members
(``explain_ensemble``). ``explain_best`` runs in a Ray task of its own."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..records import PreparedData
from .explain import Explanation, explain_pipeline, raw_names
from .explain_ensemble import explain_ensemble, is_ensemble
from .pipeline import take_rows


def explain_best(model: Any, data: PreparedData, settings: dict[str, Any]) -> tuple[Any, Any]:
    """(Explanation, the raw rows it explains) for the refit best model.

    `settings`: `rows` (how many to explain) plus explain_pipeline's keyword arguments.
    """
    options = dict(settings)
    wanted = options.pop("rows")
    source = data.X_valid if data.X_valid is not None else data.X
    n = source.shape[0]
    rng = np.random.default_rng(data.seed)
    idx = np.arange(n) if n <= wanted else np.sort(rng.choice(n, wanted, replace=False))
    rows = take_rows(source, idx)
    explain = explain_ensemble if is_ensemble(model) else explain_pipeline
    explanation: Explanation = explain(
        model,
        rows,
        data.X,
        task=data.task,
        classes=None if data.classes is None else list(data.classes),
        raw_names=raw_names(data.X),
        seed=data.seed,
        **options,
    )
    return explanation, take_rows(rows, np.arange(explanation.shap_engineered.shape[1]))
