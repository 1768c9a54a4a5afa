"""The command as a user runs it: a subprocess in an empty folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import mlflow_runs

EXE = shutil.which("automl-runner")


def cli(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300):
    return subprocess.run(
        [EXE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_default_experiment_from_an_empty_folder(tmp_path):
    # the 8 cheapest families of the portfolio (gradient boosting, 9 s on digits, is not)
    out = cli(["automl.iterations=8"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    # the table: a header and one row per iteration
    lines = out.stdout.splitlines()
    header = next(
        i
        for i, line in enumerate(lines)
        if re.match(r"\s*ITERATION\s+PIPELINE\s+DURATION\s+METRIC\s+BEST", line)
    )
    rows = [line for line in lines[header + 1 :] if re.match(r"\s+\d+\s{3}\S", line)]
    numbers = sorted(int(r.split()[0]) for r in rows)
    # 8 search iterations (the portfolio: every family's default, so no timing decides
    # them), then the two ensembles numbered after them
    assert numbers == list(range(10))
    ensembles = {int(r.split()[0]): r.split()[1] for r in rows if int(r.split()[0]) >= 8}
    assert ensembles == {8: "VotingEnsemble", 9: "StackEnsemble"}
    # the summary says where everything is and how to open it
    db = tmp_path / "outputs" / "mlflow" / "mlflow.db"
    assert f"mlflow ui --backend-store-uri sqlite:///{db}" in out.stdout
    run_id = re.search(r"MLflow run:\s+([0-9a-f]{32}) \(parent\)", out.stdout).group(1)
    model_uri = re.search(r"best model:\s+(\S+)", out.stdout).group(1)
    # artifacts stay under outputs/, nothing lands in ./mlruns
    assert not (tmp_path / "mlruns").exists()
    assert any((tmp_path / "outputs" / "mlflow" / "artifacts").rglob("MLmodel"))
    assert list((tmp_path / "outputs" / "runs").rglob("automl-runner.log"))
    from mlflow import MlflowClient

    uri = f"sqlite:///{db}"
    exp = MlflowClient(uri).get_experiment_by_name("automl-digits")
    parents, children = mlflow_runs(uri, exp.experiment_id)
    assert [p.info.run_id for p in parents] == [run_id]
    assert len(children) == len(numbers) and all(
        c.data.tags["mlflow.parentRunId"] == run_id for c in children
    )
    code = (
        "import mlflow; from sklearn.datasets import load_digits;"
        f"mlflow.set_tracking_uri('{uri}'); m = mlflow.pyfunc.load_model('{model_uri}');"
        "d = load_digits(); print((m.predict(d.data[:10]) == d.target[:10]).mean())"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr
    assert float(loaded.stdout.strip()) >= 0.8


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_INPUTS = [
    (["compute=gpu"], "compute=gpu: no such option; allowed: cluster, local, ray"),
    (["automl.iteratons=3"], "automl.iteratons: no such key; allowed keys: task, iterations,"),
    (
        ["automl.iterations=ten"],
        "automl.iterations=ten: Value 'ten' of type 'str' could not be converted to Integer",
    ),
    (
        ["automl.primary_metric=r2_score"],
        "automl.primary_metric=r2_score: allowed for classification: AUC_weighted,",
    ),
    (["automl.iterations=0"], "automl.iterations=0: must be >= 1"),
    (["automl.iteration_timeout_minutes=0"], "automl.iteration_timeout_minutes=0.0: must be > 0"),
    (
        ["automl.experiment_timeout_minutes=-1"],
        "automl.experiment_timeout_minutes=-1.0: must be > 0 or null",
    ),
    (
        ["compute=ray", "compute.address=127.0.0.1:6379", "compute.cluster_name=my_cluster"],
        "compute.cluster_name=my_cluster: contains _; allowed: 1 to 63 characters",
    ),
    (
        ["data=script", "data.path=missing/get_data.py"],
        "data.path=missing/get_data.py: no such file",
    ),
    (
        ["data=script", "data.path={raises}"],
        "get_data() raised ConnectionError: blob store unreachable",
    ),
    (["data=script", "data.path={noget}"], "defines no get_data() function"),
    (
        ["data=script", "data.path={notdict}"],
        "get_data() returned list; expected a dict with keys X and y",
    ),
    (["data=script", "data.path={noy}"], "get_data() returned no y; keys: X"),
    (["data=script", "data.path={lengths}"], "X has 10 rows but y has 9; they must match"),
    (
        ["data=file", "data.path={csv}", "data.target=Exited"],
        "data.target=Exited: no such column in t.csv; columns: a, b, label",
    ),
    (
        [
            "data=file",
            "data.path={csv1}",
            "data.target=label",
            "automl.n_cross_validations=null",
            "automl.validation_size=0.2",
        ],
        "class 'rare' has a single row; a stratified holdout needs two per class",
    ),
    (["data=file", "data.path={csv}"], "data.target=???: is required"),
    # read-only: explaining a run of a store that does not exist creates none
    (["explain.only=0123abc"], "explain.only=0123abc: no MLflow store at sqlite:///"),
    # nothing listens there: refused before the store opens (no empty store left behind)
    (
        ["compute=ray", "compute.address=127.0.0.1:1"],
        "compute.address=127.0.0.1:1: cannot join a Ray cluster there",
    ),
    (
        ["compute=cluster", "compute.provider=ibm"],
        "compute.provider=ibm: allowed: aws, gcp, azure, kubernetes, fake",
    ),
    (["foo=1"], "foo: no such key; allowed keys: compute, data, automl, search_space, tracking"),
    (["automl.guardrails=loud"], "automl.guardrails=loud: allowed: warn, strict, off"),
    # strict: an ALERTED guardrail ends the run before Ray starts or the store opens
    (
        ["data=file", "data.path={idcsv}", "data.target=label", "automl.guardrails=strict"],
        "idcsv.csv: guardrail id_columns ALERTED: id (integers in row order) unique per row: "
        "an identifier, not a feature; drop it (data.drop_columns)",
    ),
]


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "raises": _write(
            tmp_path / "raises.py",
            "def get_data():\n    raise ConnectionError('blob store unreachable')\n",
        ),
        "noget": _write(tmp_path / "noget.py", "DATA = 1\n"),
        "notdict": _write(tmp_path / "notdict.py", "def get_data():\n    return [1, 2]\n"),
        "noy": _write(
            tmp_path / "noy.py",
            "import numpy as np\ndef get_data():\n    return {'X': np.ones((3, 2))}\n",
        ),
        "lengths": _write(
            tmp_path / "lengths.py",
            "import numpy as np\ndef get_data():\n    return {'X': np.ones((10, 2)), 'y': np.arange(9)}\n",
        ),
        "csv": _write(
            tmp_path / "t.csv", "a,b,label\n1,x,yes\n2,y,no\n3,x,yes\n4,y,no\n5,x,rare\n" * 2
        ),
        "csv1": _write(tmp_path / "t1.csv", "a,b,label\n" + "1,x,yes\n2,y,no\n" * 5 + "5,x,rare\n"),
        "idcsv": _write(
            tmp_path / "idcsv.csv",
            "id,a,label\n"
            + "".join(f"{100 + i},{i % 7},{'yes' if i % 3 else 'no'}\n" for i in range(40)),
        ),
    }


def main_in_process(args: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `automl-runner ARGS` run by cli.main() in this
    process, Hydra's and logging's process-wide state put back afterwards."""
    import logging

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    from automl_runner.entry import cli as entry

    root = logging.getLogger()
    saved = (dict(Singleton._instances), list(root.handlers), root.level)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["automl-runner", *args])
    capsys.readouterr()
    code = 0
    try:
        entry.main()
    except SystemExit as ex:
        code = ex.code if isinstance(ex.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
        Singleton._instances.clear()
        Singleton._instances.update(saved[0])
        for handler in root.handlers:
            if handler not in saved[1]:
                handler.close()
        root.handlers[:] = saved[1]
        root.setLevel(saved[2])
    out = capsys.readouterr()
    return code, out.out, out.err


def _check_one_line(code: int, stdout: str, stderr: str, message: str, cwd: Path) -> None:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("automl-runner: error: ")
    assert message in lines[0]
    assert "Traceback" not in stdout + stderr
    # nothing ran: no MLflow store was created
    assert not (cwd / "outputs" / "mlflow").exists()


@pytest.mark.parametrize("case", range(len(BAD_INPUTS)), ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, case):
    files = _bad_files(tmp_path)
    args, message = BAD_INPUTS[case]
    cwd = tmp_path / "run"
    cwd.mkdir()
    code, stdout, stderr = main_in_process(
        [a.format(**files) for a in args], cwd, monkeypatch, capsys
    )
    _check_one_line(code, stdout, stderr, message, cwd)


# one bad input of each kind as the real command, in a process of its own: an unknown
# option (composition), a bad value (validation), a failing data script (loading)
AS_COMMANDS = [0, 4, 9]


@pytest.mark.parametrize("case", AS_COMMANDS, ids=[" ".join(BAD_INPUTS[i][0]) for i in AS_COMMANDS])
def test_bad_input_as_the_command_is_one_line_and_exit_2(tmp_path, case):
    files = _bad_files(tmp_path)
    args, message = BAD_INPUTS[case]
    cwd = tmp_path / "run"
    cwd.mkdir()
    out = cli([a.format(**files) for a in args], cwd, timeout=180)
    _check_one_line(out.returncode, out.stdout, out.stderr, message, cwd)


@pytest.mark.parametrize("command", ["status", "wait", "stop", "logs"])
def test_automl_ctl_on_a_store_that_does_not_exist_is_one_line_and_creates_none(
    tmp_path, capsys, command
):
    from automl_runner.entry import ctl

    db = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(SystemExit) as exit_:
        ctl.main([command, "0123abc", "--tracking-uri", f"sqlite:///{db}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == f"automl-ctl: error: no MLflow store at sqlite:///{db}\n"
    assert not db.exists() and not db.parent.exists()


def test_automl_ctl_on_a_tracking_server_that_is_not_there_is_one_line_at_once(
    tmp_path, capsys, monkeypatch
):
    from automl_runner.entry import ctl
    from system.loopback import free_port

    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        ctl.main(["status", "0123abc"])
    # not after MLflow's minutes of retries
    assert time.monotonic() - started < 20
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"automl-ctl: error: no MLflow store at http://127.0.0.1:{port}: no server answers "
        f"at 127.0.0.1:{port} (Connection refused) (pass --tracking-uri, or set "
        "MLFLOW_TRACKING_URI)\n"
    )


def _run_dirs_of_two_at_once(cwd: Path) -> list[Path]:
    """The Hydra run folders of two commands started at once in `cwd` (each refused at
    validation, after Hydra made its folder), in start order."""
    procs = [
        subprocess.Popen(
            [EXE, f"automl.iterations={n}"],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in (0, -1)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 2
    return sorted((cwd / "outputs" / "runs").glob("*/*"))


def test_two_runs_started_in_the_same_second_get_a_folder_each(tmp_path):
    # until a pair lands in the same second (the folder names start HH-MM-SS)
    for attempt in range(4):
        cwd = tmp_path / str(attempt)
        cwd.mkdir()
        dirs = _run_dirs_of_two_at_once(cwd)
        if len(dirs) == 1 or dirs[0].name[:8] == dirs[1].name[:8]:
            break
    else:
        pytest.skip("no two runs started in the same second")
    assert len(dirs) == 2, [d.name for d in dirs]
    overrides = sorted((d / ".hydra" / "overrides.yaml").read_text() for d in dirs)
    assert overrides == ["- automl.iterations=-1\n", "- automl.iterations=0\n"]
    assert all(re.fullmatch(r"\d\d-\d\d-\d\d-\d{6}", d.name) for d in dirs)


def test_hydra_full_error_shows_the_traceback(tmp_path):
    out = cli(["automl.iterations=0"], tmp_path, env={"HYDRA_FULL_ERROR": "1"}, timeout=120)
    assert out.returncode != 0
    assert "Traceback (most recent call last)" in out.stderr
    assert "automl.iterations=0: must be >= 1" in out.stderr


def test_python_dash_m_is_the_same_command(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "automl_runner", "automl.iterations=-1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "automl-runner: error: automl.iterations=-1: must be >= 1 or null"
    )


def test_cfg_job_prints_every_key_with_its_default(tmp_path):
    out = cli(["--cfg", "job", "data=wine"], tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    for key in (
        "iteration_timeout_minutes: 10.0",
        "n_cross_validations: 5",
        "name: wine",
        "max_concurrent_iterations: null",
        "store_dir: outputs/mlflow",
    ):
        assert key in out.stdout


@pytest.mark.slow
def test_verbosity_and_debug_log(tmp_path):
    from conftest import BROKEN

    out = cli(
        [
            "data=iris",
            BROKEN,
            "automl.allowed_models=[Broken,LogisticRegression]",
            "automl.iterations=3",
            "automl.verbosity=WARNING",
            "automl.debug_log=debug.log",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # WARNING: no table rows on the console
    assert "ITERATION" not in out.stdout and "best pipeline" not in out.stdout
    # the debug log has what the console left out, down to the failed iteration's traceback
    debug = (tmp_path / "debug.log").read_text()
    assert "ITERATION" in debug
    assert re.search(r"DEBUG iteration \d+ failed:", debug)
    assert "RuntimeError: this estimator always fails" in debug


@pytest.mark.slow
def test_multirun_prints_a_sweep_summary_and_logs_a_sweep_run(tmp_path):
    out = cli(
        ["-m", "data=iris,wine", "automl.iterations=2", "automl.model_explainability=false"],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"sweep summary \(2 jobs, outputs/multirun/", out.stdout)
    run_id = re.search(r"sweep run:\s+([0-9a-f]{32})", out.stdout).group(1)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow' / 'mlflow.db'}")
    sweep = client.get_run(run_id)
    assert sweep.data.tags["automl.kind"] == "sweep"
    jobs = sweep.data.tags["automl.jobs"].split(",")
    assert len(jobs) == 2
    for parent_id in jobs:
        parent = client.get_run(parent_id)
        assert parent.data.tags["automl.sweep_run_id"] == run_id
        assert parent.data.tags["automl.data"] in ("iris", "wine")
        assert parent_id in out.stdout
    summary = client.download_artifacts(run_id, "sweep_summary.csv", str(tmp_path))
    assert Path(summary).read_text().count("\n") == 3


def test_automl_ctl_submit_to_no_jobs_api_is_one_line_and_creates_no_run(
    tmp_path, capsys, monkeypatch
):
    from automl_runner.entry import ctl
    from system.loopback import free_port

    port = free_port()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        ctl.main(["submit", "--address", f"http://127.0.0.1:{port}", "data=iris"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"automl-ctl: error: cannot submit a Ray job to http://127.0.0.1:{port}: nothing "
        "answers there (Connection refused); pass the head's dashboard address, "
        "http://HEAD:8265\n"
    )
    assert not (tmp_path / "outputs").exists()
