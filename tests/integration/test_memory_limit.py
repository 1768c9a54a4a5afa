"""The refit runs under the same memory limit as the iterations: past it, one line naming
the refit and the limit, in seconds, and the Ray instance (the driver) goes on."""

from __future__ import annotations

import time

import pytest

from automl_runner.config.schema import AutoMLConfig, BuiltinData
from automl_runner.data import load
from automl_runner.engine.ray_executor import RayExecutor
from automl_runner.errors import ComputeError
from automl_runner.experiment.setup import prepare
from automl_runner.records import Candidate

UNBOUNDED = Candidate(
    preprocessor="standard_scaler",
    preprocessor_target="sklearn.preprocessing.StandardScaler",
    preprocessor_params={},
    estimator="unbounded",
    estimator_target="automl_test_estimators.UnboundedClassifier",
    estimator_params={},
    description="Standardize unbounded",
    family="Unbounded",
)


def test_a_refit_past_the_memory_limit_is_one_line_and_the_driver_goes_on(ray_local):
    automl = AutoMLConfig(n_cross_validations=2)
    data = prepare(load(BuiltinData(name="iris"), automl), automl)
    executor = RayExecutor(data, timeout_s=60, memory_mb=400)
    started = time.monotonic()
    with pytest.raises(
        ComputeError, match=r"^the refit used [\d,]+ MB, past its memory limit of 400 MB"
    ):
        executor.refit(UNBOUNDED)
    assert time.monotonic() - started < 30
    assert ray_local.get(ray_local.put(1)) == 1
