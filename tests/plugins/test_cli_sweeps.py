"""`automl-runner -m ... hydra/launcher=ray` as a user runs it: a subprocess in an empty folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import NO_ENSEMBLES, mlflow_runs
from mlflow import MlflowClient
from system.test_cli import cli

from ._ray_env import RAY_ENV


def runner(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return cli(args, cwd, env=RAY_ENV, timeout=timeout)


def experiment_runs(tmp_path: Path, name: str):
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow' / 'mlflow.db'}"
    experiment = MlflowClient(uri).get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment {name}"
    return mlflow_runs(uri, experiment.experiment_id)


@pytest.mark.slow
def test_four_parallel_jobs_run_as_ray_tasks_share_one_fresh_sqlite_store_and_print_a_sweep_summary(
    tmp_path: Path,
) -> None:
    # the sweep: 2 data sets x 2 metrics; two jobs per experiment name open the
    # fresh store and create their experiment at the same moment
    out = runner(
        [
            "-m",
            "data=digits,wine",
            "automl.primary_metric=AUC_weighted,accuracy",
            "automl.iterations=2",
            *NO_ENSEMBLES,
            "automl.n_cross_validations=2",
            "automl.model_explainability=false",
            "hydra/launcher=ray",
            "hydra.launcher.num_cpus=2",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Ray launcher is launching 4 jobs on 127.0.0.1:" in out.stdout + out.stderr
    assert "database is locked" not in out.stdout + out.stderr
    parents = []
    for name in ("digits", "wine"):
        found, children = experiment_runs(tmp_path, f"automl-{name}")
        assert len(found) == 2 and all(p.info.status == "FINISHED" for p in found), name
        assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children), name
        # each job's 2 iterations are children of its own parent run
        for parent in found:
            mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
            assert len(mine) == 2, name
        parents += found
    # Hydra's per-job output dirs and logs, as its own launchers leave them
    job_dirs = sorted(
        p.parent for p in (tmp_path / "outputs" / "multirun").rglob("automl-runner.log")
    )
    assert [d.name for d in job_dirs] == ["0", "1", "2", "3"]
    assert all((d / ".hydra" / "overrides.yaml").exists() for d in job_dirs)
    assert sorted(p.data.tags["automl.primary_metric"] for p in parents) == [
        "AUC_weighted",
        "AUC_weighted",
        "accuracy",
        "accuracy",
    ]
    # the jobs ran at the same time: their parent runs add up to more than the sweep's span
    busy = sum(p.info.end_time - p.info.start_time for p in parents)
    span = max(p.info.end_time for p in parents) - min(p.info.start_time for p in parents)
    assert busy > span  # run one after another, they would add up to less than the span
    # one table across the jobs, and a sweep run every job's parent run points to
    assert "sweep summary (4 jobs, outputs/multirun/" in out.stdout
    sweep_ids = {
        p.data.tags.get("automl.sweep_run_id")
        for p in (
            MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow' / 'mlflow.db'}").get_run(
                p.info.run_id
            )
            for p in parents
        )
    }
    assert len(sweep_ids) == 1 and None not in sweep_ids
    for p in parents:
        assert p.info.run_id in out.stdout
    # the sweep run's table is in the store's artifact root, like the jobs' artifacts;
    # nothing lands in ./mlruns (the launch folder, where the summary runs) or a job dir
    store = tmp_path.resolve() / "outputs" / "mlflow"
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    sweep_run = client.get_run(sweep_ids.pop())
    assert sweep_run.info.artifact_uri.startswith((store / "artifacts").as_uri() + "/")
    assert [a.path for a in client.list_artifacts(sweep_run.info.run_id)] == ["sweep_summary.csv"]
    assert not list(tmp_path.rglob("mlruns"))


def test_spread_jobs_with_the_local_store_is_refused_in_one_line(tmp_path: Path) -> None:
    out = runner(
        ["-m", "data=iris,wine", "hydra/launcher=ray", "hydra.launcher.spread_jobs=true"],
        tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "automl-runner: error: hydra.launcher.spread_jobs=true: tracking.kind=local keeps the "
        "MLflow store in a SQLite file on this machine; placing job drivers on other nodes needs "
        "tracking=server (tracking.uri=http://MLFLOW_HOST:5000)"
    ]
    # refused before anything ran
    assert not (tmp_path / "outputs" / "mlflow").exists()


@pytest.mark.slow
def test_a_job_with_a_user_error_ends_the_sweep_with_its_line_and_exit_2(tmp_path: Path) -> None:
    out = runner(
        [
            "-m",
            "data=iris,wine",
            "automl.primary_metric=r2_score",
            "automl.iterations=1",
            *NO_ENSEMBLES,
            "hydra/launcher=ray",
            "hydra.launcher.num_cpus=1",
        ],
        tmp_path,
    )
    assert out.returncode == 2
    # each job's line reaches the console (through Ray's log forwarding, with its prefix)
    line = "automl-runner: error: automl.primary_metric=r2_score: allowed for classification:"
    assert (out.stdout + out.stderr).count(line) == 2
