"""The scikit-learn pipeline of a candidate: [prepare] -> [scaler] -> estimator.

Only scikit-learn classes go in, so a pickled model loads wherever scikit-learn is
installed, without this package (the date step's functions travel by value with the
logged model).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import Pipeline

from ..records import Candidate, PreparedData
from ..space import import_target

# the one-hot encoding of a categorical column: at most this many columns, the values
# seen in fewer than MIN_FREQUENCY training rows (and the rarest past the limit) grouped
# into one "infrequent" column (data/guardrails.py reports the columns it groups)
MAX_CATEGORIES = 32
MIN_FREQUENCY = 5


def pipeline_for(data: PreparedData, candidate: Candidate) -> Pipeline:
    """The unfitted pipeline of a search candidate for this data."""
    if candidate.members:
        raise ValueError("an ensemble candidate has no single pipeline; use refit()")
    return build_pipeline(
        candidate,
        preprocess=data.preprocess,
        numeric=data.numeric,
        categorical=data.categorical,
        impute=data.impute,
        dates=data.dates,
        dataframe=isinstance(data.X, pd.DataFrame),
        sparse_input=not isinstance(data.X, pd.DataFrame | np.ndarray),
        seed=data.seed,
    )


def take_rows(X: Any, idx: np.ndarray) -> Any:
    return X.iloc[idx] if isinstance(X, pd.DataFrame) else X[idx]


def _make(target: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    cls = import_target(target)
    # YAML has no tuples; scikit-learn's validation wants them where lists appear
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    # seeded by automl.seed where the class takes one (CatBoost's get_params lists only
    # what was set, so its constructor is asked too)
    obj = cls(**kwargs)
    if "random_state" not in kwargs and (
        "random_state" in obj.get_params() or "random_state" in inspect.signature(cls).parameters
    ):
        obj.set_params(random_state=seed)
    return obj


def build_pipeline(
    candidate: Candidate,
    *,
    preprocess: bool,
    numeric: list[str],
    categorical: list[str],
    dataframe: bool,
    sparse_input: bool,
    seed: int,
    impute: bool = True,
    dates: list[str] | None = None,
) -> Pipeline:
    """The scikit-learn pipeline for a candidate: [prepare] -> [scaler] -> estimator.

    `prepare` (impute, one-hot encode, dates into numbers) is there when the data needs
    it: categorical or date columns, or missing values in the training or validation
    rows. Numeric data without any gets none, so no copy of it is made for nothing (such
    a model, like any plain scikit-learn estimator, refuses missing values at predict
    time). A family that takes categorical columns natively (`native_categorical`) gets
    them as integer codes, in a frame, and their names through its own keyword; it has
    no scaler.
    """
    dates = dates or []
    steps: list[tuple[str, Any]] = []
    native = candidate.native_categorical if categorical and dataframe and preprocess else ""
    # sparse input is numeric, its zeros are data
    if preprocess and not sparse_input and (impute or categorical or dates):
        steps.append(("prepare", _prepare(numeric, categorical, dataframe, dates, bool(native))))
    if candidate.preprocessor_target:
        steps.append(
            ("scale", _make(candidate.preprocessor_target, candidate.preprocessor_params, seed))
        )
    params = dict(candidate.estimator_params)
    if native:
        params[native] = list(categorical)
    model = _make(candidate.estimator_target, params, seed)
    steps.append(("model", encode_labels(model) if candidate.encode_labels else model))
    return Pipeline(steps)


def encode_labels(model: BaseEstimator) -> BaseEstimator:
    """The classifier behind a label encoder, as one plain scikit-learn estimator.

    scikit-learn's VotingClassifier fits its members on the labels encoded as 0..k-1 and
    decodes what it predicts; with one member and soft voting its probabilities are that
    member's. So a classifier that takes labels 0..k-1 only (XGBoost) fits any labels,
    and also a cross-validation fold that lacks a class (its labels are then not
    0..k-1), while the pickled model stays scikit-learn classes and predicts the labels
    as given.
    """
    from sklearn.ensemble import VotingClassifier

    return VotingClassifier([("encoded", model)], voting="soft")


def encoded_member(model: Any) -> Any:
    """The fitted classifier inside `encode_labels`'s wrapper; any other model as is."""
    from sklearn.ensemble import VotingClassifier

    if (
        isinstance(model, VotingClassifier)
        and [name for name, _ in model.estimators] == ["encoded"]
        and hasattr(model, "estimators_")
    ):
        return model.estimators_[0]
    return model


def _prepare(
    numeric: list[str],
    categorical: list[str],
    dataframe: bool,
    dates: list[str] | None = None,
    native: bool = False,
) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import FunctionTransformer

    from ..dates import date_parts, part_names

    num = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    if not dataframe:
        return num
    cat = _codes() if native else _one_hot()
    parts = []
    if numeric:
        parts.append(("numeric", num, list(numeric)))
    if categorical:
        parts.append(("categorical", cat, list(categorical)))
    if dates:
        when = Pipeline(
            [
                ("parts", FunctionTransformer(date_parts, feature_names_out=part_names)),
                ("impute", clone(num)),
            ]
        )
        parts.append(("dates", when, list(dates)))
    prepare = ColumnTransformer(
        parts, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=False
    )
    # a frame keeps the codes integers (a family taking categories natively refuses
    # floats there) and the columns' names, which its keyword gives
    return prepare.set_output(transform="pandas") if native else prepare


def _one_hot() -> Any:
    """Categories as one-hot columns: missing values a category of their own, at most
    MAX_CATEGORIES columns, the values seen in fewer than MIN_FREQUENCY rows (and values
    unseen in training) in the "infrequent" column (or all-zero)."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    return Pipeline(
        [
            (
                "impute",
                SimpleImputer(strategy="constant", fill_value="missing", keep_empty_features=True),
            ),
            (
                "encode",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    max_categories=MAX_CATEGORIES,
                    min_frequency=MIN_FREQUENCY,
                    sparse_output=False,
                ),
            ),
        ]
    )


def _codes() -> Any:
    """Categories as integer codes for a family that handles them itself: every value
    seen in training its own code, missing values -2, values unseen in training -1."""
    from sklearn.preprocessing import OrdinalEncoder

    return OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=-1,
        encoded_missing_value=-2,
        dtype=np.int64,
    )


def model_bytes(model: Any) -> int:
    """The size of the model's pickle, its arrays counted without being copied.

    Pickled with cloudpickle, the serializer `log_model` saves it with (MLflow depends on
    it), so any model MLflow can log can be measured.
    """
    import cloudpickle

    arrays: list[int] = []
    rest = cloudpickle.dumps(
        model, protocol=5, buffer_callback=lambda b: arrays.append(memoryview(b).nbytes)
    )
    return len(rest) + sum(arrays)
