"""The features an estimator sees, and the user's column each one comes from: what lets an
explanation in engineered features (one-hot columns, missing-value flags, date parts) be
summed back to the raw columns."""

from __future__ import annotations

from typing import Any

import numpy as np

from .pipeline import encoded_member


def split_pipeline(pipeline: Any) -> tuple[Any, Any]:
    """(the transforming steps as one object, the final estimator)."""
    from sklearn.pipeline import Pipeline

    steps = pipeline.steps
    # a classifier behind a label encoder is explained itself: its probability columns
    # are the classes in the same (sorted) order
    return Pipeline(steps[:-1]) if len(steps) > 1 else None, encoded_member(steps[-1][1])


def transform(pipeline: Any, X: Any) -> np.ndarray:
    """The rows as the final estimator sees them, as floats (what explainers work on;
    `model_input` turns them back into what the estimator takes)."""
    front, _ = split_pipeline(pipeline)
    Z = X if front is None else front.transform(X)
    Z = Z.toarray() if hasattr(Z, "toarray") else np.asarray(Z)
    return Z.astype(float)


def model_input(model: Any, Z: np.ndarray) -> Any:
    """Engineered rows as floats, as the fitted estimator takes them: for one that handles
    categorical columns itself (CatBoost's cat_features), a frame with those columns as
    the integer codes it was fitted on (it refuses floats there); else Z as it is."""
    import pandas as pd

    indices = getattr(model, "get_cat_feature_indices", None)
    cats = list(indices()) if callable(indices) else []
    if not cats:
        return Z
    frame = pd.DataFrame(np.asarray(Z, dtype=float), columns=list(model.feature_names_))
    names = frame.columns[cats]
    frame[names] = np.rint(frame[names]).astype(np.int64)
    return frame


def feature_sources(pipeline: Any, raw_names: list[str]) -> tuple[list[str], list[str]]:
    """(engineered feature names, the raw column each one came from)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OrdinalEncoder

    prepare = pipeline.named_steps.get("prepare")
    if prepare is None:
        return list(raw_names), list(raw_names)
    if isinstance(prepare, SimpleImputer):
        return _imputer_sources(prepare, raw_names)
    assert isinstance(prepare, ColumnTransformer)
    names: list[str] = []
    sources: list[str] = []
    for part, trans, cols in prepare.transformers_:
        if part == "remainder" or trans == "drop":
            continue
        cols = list(cols)
        if isinstance(trans, SimpleImputer | OrdinalEncoder):
            # a column per column (integer codes: a family that takes categories natively)
            n, s = _imputer_sources(trans, cols)
        else:  # impute -> one-hot: each output belongs to the column it encodes
            n = [str(x) for x in trans.get_feature_names_out(cols)]
            s = [_owner(name, cols) for name in n]
        names += n
        sources += s
    return names, sources


def _imputer_sources(imputer: Any, cols: list[str]) -> tuple[list[str], list[str]]:
    names, sources = list(cols), list(cols)
    indicator = getattr(imputer, "indicator_", None)
    if indicator is not None:
        for i in indicator.features_:
            names.append(f"missingindicator_{cols[i]}")
            sources.append(cols[i])
    return names, sources


def _owner(name: str, cols: list[str]) -> str:
    # one-hot names are f"{column}_{category}", date parts f"{column}_{part}" and their
    # missing-value flags f"missingindicator_{column}_{part}"; the longest match wins
    name = name.removeprefix("missingindicator_")
    matches = [c for c in cols if name.startswith(f"{c}_")]
    return max(matches, key=len) if matches else cols[0]
