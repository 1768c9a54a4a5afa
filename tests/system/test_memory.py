"""An iteration Ray's memory monitor kills: rerun at most compute.max_retries times, then
recorded FAILED with a reason that names memory, in MLflow and on the console.

Ray's threshold is lowered for the run's local instance (RAY_memory_usage_threshold, read
by its raylet) to a little above what the machine uses now, so an estimator that
allocates 100 MB steps crosses it after a gigabyte or so: no machine is short of memory,
yet the monitor acts as it would on a full node.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from automl_test_estimators import marks
from conftest import NO_ENSEMBLES, mlflow_runs
from mlflow import MlflowClient

from system.loopback import RAY_ENV, LoopbackCluster
from system.test_cli import cli

HUNGRY = (
    "++search_space.estimators={hungry: {_target_: automl_test_estimators.HungryClassifier,"
    " name: Hungry, display: hungry, task: classification}}"
)
# the run's own processes (driver, raylet, GCS: ~1 GB) fit under the threshold, the
# hungry estimator's next gigabyte does not. What others do on a shared machine moves
# the node's usage by gigabytes within seconds: above the threshold, the monitor kills
# the hungry iteration sooner (the run has no other task to kill: one iteration, no
# refit); below, the estimator allocates up to its 4 GB limit, past the threshold still
HEADROOM_BYTES = 2e9


def _threshold() -> float:
    """A memory usage threshold HEADROOM_BYTES above what the node uses now, counted as
    Ray's memory monitor counts it (the cgroup's usage where there is one)."""
    from ray._private.utils import get_system_memory, get_used_memory

    return (get_used_memory() + HEADROOM_BYTES) / get_system_memory()


def _hungry_run(tmp_path: Path, overrides: list[str], env: dict[str, str]):
    """One hungry iteration, compute.max_retries=1; (the command's output, marks folder)."""
    folder = tmp_path / "marks"
    folder.mkdir()
    out = cli(
        [
            "data=iris",
            HUNGRY,
            "automl.allowed_models=[Hungry]",
            f"++search_space.estimators.hungry.fixed={{marks: '{folder}'}}",
            "automl.iterations=1",
            *NO_ENSEMBLES,
            "compute.max_retries=1",
            # Ray's own OOM reruns, unbounded, would go on until this and end TIMEOUT
            "automl.iteration_timeout_minutes=1",
            *overrides,
        ],
        tmp_path,
        env=env,
        timeout=240,
    )
    return out, folder


def _assert_killed_for_memory_twice_and_recorded_so(out, tmp_path: Path, folder: Path) -> None:
    # the one iteration failed: no model, one line
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
    assert "no iteration completed (1 failed or timed out)" in out.stderr
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(uri)
    _, children = mlflow_runs(uri, client.get_experiment_by_name("automl-iris").experiment_id)
    [hungry] = children
    assert hungry.data.tags["automl.status"] == "FAILED"
    # started once and rerun once (compute.max_retries=1), each time in a new worker
    assert len({pid for _, pid in marks(folder)[0]}) == 2
    assert hungry.data.metrics["duration_seconds"] < 30
    # the reason: one line that says memory, first in the iteration's log in MLflow, with
    # Ray's whole report below it
    log = Path(client.download_artifacts(hungry.info.run_id, "traceback.txt", str(tmp_path)))
    reason, *rest = log.read_text().splitlines()
    assert reason.startswith("killed by Ray for memory (rerun up to compute.max_retries=1 time(s))")
    assert "over its memory usage threshold (" in reason
    assert any("OutOfMemoryError" in line for line in rest)
    # on the console: under the iteration's row, and nothing of Ray's report of the rerun
    lines = out.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.split()[:1] == ["0"])
    assert "FAILED" in lines[row]
    assert lines[row + 1].strip() == reason
    assert "OOM" not in out.stdout + out.stderr


MONITOR = {"RAY_memory_monitor_refresh_ms": "100"}


@pytest.mark.slow
def test_an_iteration_killed_for_memory_is_rerun_max_retries_times_then_failed_saying_so(
    tmp_path: Path,
):
    # the runner's local instance: its raylet reads the threshold from the environment
    env = {"RAY_memory_usage_threshold": f"{_threshold():.4f}", **MONITOR}
    out, folder = _hungry_run(tmp_path, ["compute.num_cpus=1"], env)
    _assert_killed_for_memory_twice_and_recorded_so(out, tmp_path, folder)


@pytest.mark.cluster
@pytest.mark.slow
def test_joining_a_cluster_the_reruns_for_memory_are_bounded_too(tmp_path: Path, monkeypatch):
    # the cluster's raylet has the threshold; the driver, which owns the iteration's task
    # and so decides its reruns, is told compute.max_retries through its environment
    monkeypatch.setenv("RAY_memory_usage_threshold", f"{_threshold():.4f}")
    for name, value in MONITOR.items():
        monkeypatch.setenv(name, value)
    cluster = LoopbackCluster(head_cpus=1)
    try:
        monkeypatch.delenv("RAY_memory_usage_threshold")
        out, folder = _hungry_run(tmp_path, cluster.overrides(), RAY_ENV)
    finally:
        cluster.stop()
    _assert_killed_for_memory_twice_and_recorded_so(out, tmp_path, folder)
