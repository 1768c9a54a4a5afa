"""automl-runner: declarative AutoML on Ray, logged to MLflow.

From a notebook, with the same config groups as the command line::

    import automl_runner
    result = automl_runner.run(overrides=["data=wine", "automl.iterations=10"])
    best_run, fitted_pipeline = result.get_output()

or on a Ray cluster, returning at once with a handle that works from any process::

    remote = automl_runner.submit(overrides=["compute=ray", "compute.address=HEAD:6379"])
    remote.status(); remote.cancel_iteration(3); remote.stop(); remote.wait()
    best_run, fitted_pipeline = remote.get_output()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from .entry.remote import RemoteExperiment
    from .errors import ComputeError, ConfigError, DataError, UserError
    from .experiment import ExperimentResult

__all__ = [
    "ComputeError",
    "ConfigError",
    "DataError",
    "UserError",
    "attach",
    "compose",
    "retrieve_model_explanation",
    "run",
    "submit",
]
__version__ = "0.1.0"
_ERRORS = ("ComputeError", "ConfigError", "DataError", "UserError")


def __getattr__(name: str) -> Any:
    # the error classes, imported when asked for: a Ray worker unpickling a task imports
    # this package, and needs neither Hydra (the errors' base class) nor anything else
    if name in _ERRORS:
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The experiment config for these overrides, composed exactly as the CLI does."""
    from .config.compose import compose as _compose

    return _compose(overrides)


def run(overrides: list[str] | None = None) -> ExperimentResult:
    """Run an experiment in this process; returns a result with ``get_output()``."""
    from .experiment import run_experiment

    cfg = compose(overrides)
    return run_experiment(cfg, list(overrides or []))


def submit(overrides: list[str] | None = None, address: str | None = None) -> RemoteExperiment:
    """Submit an experiment to a Ray cluster as a Ray job; returns at once with a handle.

    The handle has ``status()``, ``wait()``, ``cancel_iteration(n)``, ``stop()``,
    ``get_output()`` and ``logs()``. `address` is the Ray Jobs API (``http://HEAD:8265``).
    """
    from .entry.remote import submit as _submit

    return _submit(overrides, address)


def attach(run_id: str, tracking_uri: str | None = None) -> RemoteExperiment:
    """A handle on an experiment started elsewhere (any process, any machine), by its run id."""
    from .entry.remote import attach as _attach

    return _attach(run_id, tracking_uri)


def retrieve_model_explanation(run_or_run_id: Any, tracking_uri: str | None = None) -> tuple:
    """The seed's six explanation outputs of an experiment, read back from MLflow.

    (shap_values, expected_values, overall_summary, overall_imp, per_class_summary,
    per_class_imp); pass the parent run, its id, or any iteration run of the experiment.
    """
    from .tracking.explanations import retrieve_model_explanation as _retrieve

    return _retrieve(run_or_run_id, tracking_uri)
