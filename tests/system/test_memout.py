"""compute.memory_mb_per_iteration holds: an iteration that allocates without bound is
stopped past its limit and recorded MEMOUT, while the iterations beside it on the same
node complete and the driver's memory stays flat.

Two unbounded iterations run beside two slow ones (4 at once on one local node): one
lets the limit's MemoryError end its fit, the other swallows it and allocates on, so its
process ends itself and Ray's rerun of the task returns the MEMOUT at once.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import NO_ENSEMBLES, mlflow_runs
from mlflow import MlflowClient

from automl_runner.engine.memory_limit import ENDED_ITSELF
from system.test_cli import EXE

pytestmark = pytest.mark.slow

LIMIT_MB = 600
MB = 2**20


def _families(tmp_path: Path) -> str:
    def unbounded(key: str, name: str, stubborn: bool) -> str:
        return (
            f"{key}: {{_target_: automl_test_estimators.UnboundedClassifier, name: {name}, "
            f"display: {key}, task: classification, fixed: {{trace: '{tmp_path / key}', "
            f"stubborn: {str(stubborn).lower()}}}}}"
        )

    def slow(key: str, name: str) -> str:
        return (
            f"{key}: {{_target_: automl_test_estimators.SlowClassifier, name: {name}, "
            f"display: {key}, task: classification, fixed: {{seconds: 2}}}}"
        )

    parts = [
        unbounded("unbounded", "Unbounded", False),
        unbounded("stubborn", "Stubborn", True),
        slow("slow_a", "SlowA"),
        slow("slow_b", "SlowB"),
    ]
    return "++search_space.estimators={" + ", ".join(parts) + "}"


def _trace(path: Path) -> list[tuple[float, int]]:
    return [(float(t), int(b)) for t, b in (line.split() for line in path.read_text().splitlines())]


def test_an_iteration_past_its_memory_limit_is_memout_and_the_others_complete(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = [
        EXE,
        "data=iris",
        _families(tmp_path),
        "automl.allowed_models=[Unbounded,Stubborn,SlowA,SlowB]",
        "automl.iterations=4",
        "automl.max_concurrent_iterations=4",
        "automl.n_cross_validations=2",
        "automl.model_explainability=false",
        *NO_ENSEMBLES,
        "compute.num_cpus=4",
        f"compute.memory_mb_per_iteration={LIMIT_MB}",
        f"tracking.store_dir={tmp_path / 'mlflow'}",
    ]
    proc = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # the driver's resident memory, every 50 ms, while it runs
    samples: list[tuple[float, int]] = []

    def sample() -> None:
        driver = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                samples.append((time.time(), driver.memory_info().rss))
            except psutil.Error:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate(timeout=300)
    sampler.join()
    assert proc.returncode == 0, stderr[-3000:] + stdout[-3000:]

    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    exp = MlflowClient(uri).get_experiment_by_name("automl-iris")
    parents, children = mlflow_runs(uri, exp.experiment_id)
    by_family = {c.data.tags["automl.family"]: c for c in children}
    status = {family: run.data.tags["automl.status"] for family, run in by_family.items()}
    assert status == {
        "Unbounded": "MEMOUT",
        "Stubborn": "MEMOUT",
        "SlowA": "COMPLETED",
        "SlowB": "COMPLETED",
    }
    client = MlflowClient(uri)
    logs = {}
    for family in ("Unbounded", "Stubborn"):
        run = by_family[family]
        assert run.info.status == "FAILED"
        assert run.data.tags["automl.node"]
        path = client.download_artifacts(run.info.run_id, "iteration.log", str(tmp_path))
        logs[family] = Path(path).read_text()
    # the one that swallowed the MemoryError ended its process, and was not run again
    assert ENDED_ITSELF in logs["Stubborn"] and ENDED_ITSELF not in logs["Unbounded"]
    assert parents[0].data.metrics["iterations_memout"] == 2
    assert parents[0].data.metrics["iterations_completed"] == 2
    # the console: the MEMOUT rows, each with its reason under it
    assert stdout.count("MEMOUT") == 2
    assert stdout.count(f"past its memory limit of {LIMIT_MB} MB") == 2

    figures = []
    for key, family in (("unbounded", "Unbounded"), ("stubborn", "Stubborn")):
        trace = _trace(tmp_path / key)
        # the last step under the limit: the next one passed it (an upper bound on the
        # time from passing it to being stopped)
        over = max(t for t, used in trace if used <= LIMIT_MB * MB)
        last = trace[-1][0]
        recorded = by_family[family].info.end_time / 1000
        # stopped in the process, and recorded by the driver, seconds after passing the limit
        assert last - over < 5, (key, last - over)
        assert recorded - over < 20, (key, recorded - over)
        figures.append(
            f"{key}: last step {last - over:.2f} s and recorded MEMOUT {recorded - over:.1f} s "
            f"after its step past {LIMIT_MB} MB (peak traced {max(u for _, u in trace) / MB:.0f} MB)"
        )
        if key == "unbounded":
            start, end = trace[0][0], recorded
    # the driver's memory stays flat while the iterations beside it blow up
    before = max(rss for t, rss in samples if t < start)
    during = max(rss for t, rss in samples if start <= t <= end)
    assert during - before < 100 * MB, (before / MB, during / MB)
    print(
        "\n" + "\n".join(figures) + f"\ndriver RSS peak: {before / MB:.0f} MB before the "
        f"unbounded iteration, {during / MB:.0f} MB while it ran and was stopped"
    )
