"""The experiment's data as MLflow datasets (``mlflow.log_input``): the training rows,
the validation rows a data script gives, the test rows, each with its digest, schema,
source and context, shown under "Datasets" on the parent run and on every iteration."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

# MLflow's tag for the role of a dataset in a run
_CONTEXT = "mlflow.data.context"


def dataset_inputs(
    name: str, parts: dict[str, tuple[Any, np.ndarray | None]], source: str | None
) -> dict[str, Any]:
    """context -> DatasetInput for each non-empty part: context (training, validation,
    test) -> (X, y). Sparse parts are left out (MLflow's datasets take frames and arrays)."""
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag
    from scipy import sparse

    out = {}
    with warnings.catch_warnings():
        # the schema's caution about integer columns and missing values
        warnings.simplefilter("ignore", UserWarning)
        for context, (X, y) in parts.items():
            if X is None or sparse.issparse(X):
                continue
            named: dict[str, Any] = {"name": f"{name}-{context}"}
            if source:
                named["source"] = source
            data: Any
            if isinstance(X, pd.DataFrame):
                frame = X if y is None else X.assign(target=np.asarray(y))
                data = from_pandas(frame, targets=None if y is None else "target", **named)
            elif y is None:
                data = from_numpy(np.asarray(X), **named)
            else:
                data = from_numpy(np.asarray(X), targets=np.asarray(y), **named)
            entity = data._to_mlflow_entity()
            out[context] = DatasetInput(entity, tags=[InputTag(_CONTEXT, context)])
    return out
