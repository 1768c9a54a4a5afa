"""Shared fixtures: a real local Ray instance, real MLflow stores in tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HELPERS = str(Path(__file__).parent / "helpers")
sys.path.insert(0, HELPERS)
# Ray workers and CLI subprocesses inherit this, so they can import the test estimators
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HELPERS, os.environ.get("PYTHONPATH")]))
# local Ray instances (this process's and the CLI's) listen on loopback only, as
# compute=local does; Ray reads this when it is imported
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

BROKEN = (
    "++search_space.estimators={broken: {_target_: automl_test_estimators.BrokenClassifier,"
    " name: Broken, display: broken, task: classification}}"
)
SLOW = (
    "++search_space.estimators={slow: {_target_: automl_test_estimators.SlowClassifier,"
    " name: Slow, display: slow, task: classification}}"
)
INFINITE = (
    "++search_space.estimators={infinite: {_target_: automl_test_estimators.InfiniteProbaClassifier,"
    " name: Infinite, display: infinite, task: classification}}"
)
# tests about something else count iterations without the two ensemble iterations
NO_ENSEMBLES = ("automl.enable_voting_ensemble=false", "automl.enable_stack_ensemble=false")
SLEEPY = (
    "++search_space.estimators={sleepy: {_target_: automl_test_estimators.SleepyClassifier,"
    " name: Sleepy, display: sleepy, task: classification}}"
)


# the data guardrails in the order they run and are reported, as a user reads them
GUARDRAILS = [
    "validation_split",
    "class_imbalance",
    "missing_values",
    "high_cardinality",
    "id_columns",
    "constant_columns",
    "duplicate_rows",
    "leakage",
    "train_test_drift",
]


def require_boost(module: str):
    """The optional boosted learner `module` (the boost extra): skipped where it is not
    installed, a failure where CI installed it (AUTOML_TEST_REQUIRE_BOOST=1)."""
    if os.environ.get("AUTOML_TEST_REQUIRE_BOOST") == "1":
        import importlib

        return importlib.import_module(module)
    return pytest.importorskip(module)


@pytest.fixture(scope="module")
def ray_local():
    """One real Ray instance (2 CPUs) shared by a module's in-process experiments.

    Shut down at the end of the module, so later modules (the launcher's suites) start
    from a process with no Ray connection.
    """
    import ray

    ray.init(
        # "local": never join a cluster left over from `ray start` on this machine
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def store(tmp_path: Path) -> list[str]:
    """Overrides that point tracking at a fresh SQLite store in tmp_path."""
    return [f"tracking.store_dir={tmp_path / 'mlflow'}"]


def typed(overrides=()):
    """The typed config (config.settings) of these overrides, composed as the CLI does."""
    import automl_runner
    from automl_runner.config.settings import settings

    return settings(automl_runner.compose(list(overrides)))


def mlflow_runs(tracking_uri: str, experiment_id: str):
    """(parent runs, child runs) of an experiment, read back from the store."""
    from mlflow import MlflowClient

    runs = MlflowClient(tracking_uri).search_runs([experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children
