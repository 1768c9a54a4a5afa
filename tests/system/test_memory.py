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


@pytest.mark.slow
def test_an_iteration_killed_for_memory_is_rerun_max_retries_times_then_failed_saying_so(
    tmp_path: Path,
):
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
            "compute.num_cpus=1",
            "compute.max_retries=1",
            # Ray's own OOM reruns, unbounded, would go on until this and end TIMEOUT
            "automl.iteration_timeout_minutes=1",
        ],
        tmp_path,
        env={
            "RAY_memory_usage_threshold": f"{_threshold():.4f}",
            "RAY_memory_monitor_refresh_ms": "100",
        },
        timeout=240,
    )
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
