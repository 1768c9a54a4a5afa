"""The best model in MLflow: logged (sklearn flavour, with signature and input example)
under the parent run, and loaded back.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import Any

from .. import dates
from ..worker.pipeline import model_bytes
from . import schema

log = logging.getLogger(__name__)

# MLflow checks a logged input example by loading the saved model back and predicting on
# it: a second copy of the model in the driver. From this pickled size on (forests grown
# on tens of thousands of rows reach gigabytes), the model is logged with the signature
# inferred from the same rows instead, and without the example
EXAMPLE_MAX_MODEL_BYTES = 256 * 2**20


def log_model(
    client: Any, experiment_id: str, parent_id: str, pipeline: Any, input_example: Any
) -> str:
    """Log the fitted pipeline under the parent run; returns its URI (also the parent's
    tag BEST_MODEL_URI)."""
    import mlflow.sklearn

    # the flavour logs through MLflow's global URI: make it this client's store (the
    # driver's, or the one `automl-ctl replay` writes a journal to)
    mlflow.set_tracking_uri(client.tracking_uri)
    # created here so it belongs to this experiment; left to log_model it would
    # go to the global current experiment (and its artifacts to ./mlruns)
    logged = client.create_logged_model(
        experiment_id,
        name="model",
        source_run_id=parent_id,
        tags={schema.MODEL_PARENT: parent_id},
    )
    with warnings.catch_warnings():
        # inputs are float columns; this hint is about integer class labels as outputs
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        size = model_bytes(pipeline)
        if size < EXAMPLE_MAX_MODEL_BYTES:
            example: dict[str, Any] = {"input_example": input_example}
        else:
            from mlflow.models import infer_signature

            signature = infer_signature(input_example, pipeline.predict(input_example))
            example = {"signature": signature}
            log.info(
                "the model (%.0f MiB) is logged with its signature and no input example, "
                "which MLflow would check by loading the model back",
                size / 2**20,
            )
        with _by_value(dates):
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                run_id=parent_id,
                model_id=logged.model_id,
                **example,
                # listing requirements skips MLflow's slow import-based inference
                pip_requirements=_requirements(),
                serialization_format="cloudpickle",
            )
    client.set_tag(parent_id, schema.BEST_MODEL_URI, info.model_uri)
    return str(info.model_uri)


def register(client: Any, name: str, model_uri: str, parent_id: str) -> str:
    """Register the logged model `model_uri` under `name` with the alias ``champion``
    (moved from any earlier version); "name/version", also the parent's tag."""
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    # MLflow prints its own lines about it straight to stderr; the driver says it in one
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)
        version = mlflow.register_model(model_uri, name)
    client.set_registered_model_alias(name, schema.CHAMPION, version.version)
    registered = f"{name}/{version.version}"
    client.set_tag(parent_id, schema.REGISTERED_MODEL, registered)
    return registered


def load_model(tracking_uri: str, model_uri: str) -> Any:
    """The fitted scikit-learn model a run logged."""
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.sklearn.load_model(model_uri)


@contextmanager
def _by_value(module: ModuleType) -> Iterator[None]:
    """Pickle `module`'s functions with their code, not as a reference to this package:
    the date step's functions go into the logged model that way, so it loads where
    this package is not installed."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = [
        f"{pkg}=={version(pkg)}"
        for pkg in ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")
    ]
    for pkg in ("lightgbm", "xgboost"):  # the boost extra's learners, when installed
        with suppress(PackageNotFoundError):
            out.append(f"{pkg}=={version(pkg)}")
    return out
