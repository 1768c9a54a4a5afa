"""The launcher on its own: discovery, lazy Ray import, the plan's rules, Hydra's suites."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from hydra.core.plugins import Plugins
from hydra.errors import CompactHydraException
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from hydra_plugins.automl_ray_launcher._plan import (
    ANY,
    PIN,
    SPREAD,
    LauncherConfigError,
    SpreadJobsError,
    make_plan,
)
from hydra_plugins.automl_ray_launcher.ray_launcher import AutoMLRayLauncher
from omegaconf import OmegaConf

from ._ray_env import loopback_ray, ray_head


def job(**keys: Any) -> Any:
    return OmegaConf.create(keys)


LOCAL_STORE = {"kind": "local", "store_dir": "outputs/mlflow"}


def test_discovery() -> None:
    # by name: Hydra's scan re-executes plugin modules, so the class objects differ
    found = [f"{c.__module__}.{c.__qualname__}" for c in Plugins.instance().discover(Launcher)]
    assert f"{AutoMLRayLauncher.__module__}.{AutoMLRayLauncher.__qualname__}" in found


def test_discovery_does_not_import_ray() -> None:
    code = (
        "import sys\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.launcher import Launcher\n"
        "import hydra_plugins.automl_ray_launcher.ray_launcher\n"
        "import hydra_plugins.automl_ray_launcher.config\n"
        "names = [c.__name__ for c in Plugins.instance().discover(Launcher)]\n"
        "assert 'AutoMLRayLauncher' in names, names\n"
        "assert 'ray' not in sys.modules, 'discovery imported ray'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_local_store_pins_drivers_to_this_node() -> None:
    plan = make_plan(None, None, False, [job(tracking=LOCAL_STORE)])
    assert plan.placement == PIN


def test_server_store_lets_ray_place_drivers() -> None:
    plan = make_plan(None, None, False, [job(tracking={"kind": "server", "uri": "http://h:5000"})])
    assert plan.placement == ANY


def test_spread_jobs_with_server_store_spreads() -> None:
    plan = make_plan(None, None, True, [job(tracking={"kind": "server", "uri": "http://h:5000"})])
    assert plan.placement == SPREAD


def test_spread_jobs_with_local_store_is_one_clear_line() -> None:
    jobs = [job(tracking={"kind": "server", "uri": "http://h:5000"}), job(tracking=LOCAL_STORE)]
    with pytest.raises(SpreadJobsError) as caught:
        make_plan(None, None, True, jobs)
    message = str(caught.value)
    assert isinstance(caught.value, CompactHydraException)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in message
    assert message.startswith("hydra.launcher.spread_jobs=true: tracking.kind=local")
    assert "needs tracking=server" in message


def test_compute_ray_joins_compute_address() -> None:
    plan = make_plan(None, 4, False, [job(compute={"kind": "ray", "address": "10.0.0.1:6379"})])
    assert (plan.address, plan.address_key, plan.num_cpus) == (
        "10.0.0.1:6379",
        "compute.address",
        None,
    )


def test_launcher_address_wins_over_compute_address() -> None:
    plan = make_plan("127.0.0.1:1", None, False, [job(compute={"kind": "ray", "address": "h:1"})])
    assert (plan.address, plan.address_key) == ("127.0.0.1:1", "hydra.launcher.address")


def test_compute_local_starts_a_local_instance_with_its_cpus() -> None:
    plan = make_plan(None, None, False, [job(compute={"kind": "local", "num_cpus": 3})])
    assert (plan.address, plan.num_cpus) == (None, 3)


def test_launcher_num_cpus_wins_over_compute_num_cpus() -> None:
    plan = make_plan(None, 2, False, [job(compute={"kind": "local", "num_cpus": 3})])
    assert plan.num_cpus == 2


def test_one_sweep_runs_on_one_cluster() -> None:
    jobs = [job(compute={"kind": "ray", "address": a}) for a in ("h1:6379", "h2:6379")]
    with pytest.raises(LauncherConfigError, match=r"^compute.address=h1:6379,h2:6379: "):
        make_plan(None, None, False, jobs)


def test_compute_ray_without_address_is_refused() -> None:
    with pytest.raises(LauncherConfigError, match=r"^compute.address=\?\?\?: "):
        make_plan(None, None, False, [job(compute={"kind": "ray", "address": "???"})])


@pytest.fixture(autouse=True)
def hydra_version_base_unset():
    """Hydra's suites expect a fresh process's version base: unset, so 1.1's defaults,
    where a job changes into its own folder. `hydra.main(version_base="1.3")` sets it for
    the whole process when automl_runner.entry.cli is imported, so without this the suites
    fail after any test that imported the CLI (tests/system/test_cli.py, say)."""
    from hydra.version import _UNSPECIFIED_, VersionBase

    version = VersionBase.instance()
    saved = version.getbase()
    version.version_base = _UNSPECIFIED_
    yield
    version.version_base = saved


@pytest.fixture(scope="module")
def local_ray():
    """The launcher starts one local Ray (2 CPUs) on the first sweep; later sweeps reuse it."""
    with loopback_ray():
        yield


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
@pytest.mark.parametrize(
    "launcher_name, overrides",
    [("ray", ["hydra.launcher.num_cpus=2"])],
)
class TestRayLauncher(LauncherTestSuite):
    """Hydra's shared launcher tests, in this process, plus where the jobs ran."""

    def test_jobs_run_as_ray_tasks_and_return_in_order(
        self, hydra_sweep_runner: Any, launcher_name: str, overrides: list[str], tmpdir: Any
    ) -> None:
        def task(cfg: Any) -> tuple[int, int, str]:
            import os

            import ray

            return cfg.a, os.getpid(), ray.get_runtime_context().gcs_address

        sweep = hydra_sweep_runner(
            calling_file=None,
            calling_module="hydra.test_utils.a_module",
            task_function=task,
            config_path="configs",
            config_name="compose",
            overrides=[f"hydra/launcher={launcher_name}", *overrides, "+a=0,1,2"],
            temp_dir=tmpdir,
        )
        with sweep:
            assert sweep.returns is not None
            values = [r.return_value for r in sweep.returns[0]]
        assert [a for a, _, _ in values] == [0, 1, 2]
        assert all(pid != os.getpid() for _, pid, _ in values)
        # the instance the launcher started stays on loopback
        assert all(address.startswith("127.0.0.1:") for _, _, address in values)


@pytest.fixture(scope="module")
def cluster_address():
    """One `ray start` head for every subprocess of the integration suite to join."""
    with loopback_ray(), ray_head() as address:
        yield address


@pytest.fixture
def extra_flags(request: pytest.FixtureRequest, cluster_address: str) -> list[str]:
    # joining a running head takes a second; starting a local instance per app takes five
    return [*request.param, f"hydra.launcher.address={cluster_address}"]


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({}, ["-m", "hydra/launcher=ray", "hydra/job_logging=disabled"])],
    indirect=["extra_flags"],
)
class TestRayLauncherIntegration(IntegrationTestSuite):
    """Hydra's shared end-to-end launcher tests: apps run as subprocesses."""
