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

from .errors import ComputeError, ConfigError, DataError, UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from .experiment import ExperimentResult
    from .remote import RemoteExperiment

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


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The experiment config for these overrides, composed exactly as the CLI does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from . import config as _config  # noqa: F401  (stores the schemas)
    from .errors import one_line

    # composing creates Hydra's process-wide singletons (version base, job runtime,
    # plugins); put the caller's back afterwards so a later Hydra app starts clean
    saved = dict(Singleton._instances)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("automl_runner.conf", version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides or []))
    except (HydraException, OmegaConfBaseException) as ex:
        line = one_line(ex)
        if line is None:
            raise
        raise UserError(line) from ex
    finally:
        GlobalHydra.instance().clear()
        Singleton._instances.clear()
        Singleton._instances.update(saved)


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
    from .remote import submit as _submit

    return _submit(overrides, address)


def attach(run_id: str, tracking_uri: str | None = None) -> RemoteExperiment:
    """A handle on an experiment started elsewhere (any process, any machine), by its run id."""
    from .remote import attach as _attach

    return _attach(run_id, tracking_uri)


def retrieve_model_explanation(run_or_run_id: Any, tracking_uri: str | None = None) -> tuple:
    """The seed's six explanation outputs of an experiment, read back from MLflow.

    (shap_values, expected_values, overall_summary, overall_imp, per_class_summary,
    per_class_imp); pass the parent run, its id, or any iteration run of the experiment.
    """
    from .explanations import retrieve_model_explanation as _retrieve

    return _retrieve(run_or_run_id, tracking_uri)
