"""The heavy half of the launcher: Ray is imported here only, inside launch().

The driver composes every job's sweep config, checks the plan, starts or joins Ray,
and submits one task per job. Each task restores Hydra's globals and calls Hydra's
own ``run_job``, so output dirs, logs and JobReturns are what Hydra's launchers give.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from omegaconf import DictConfig, open_dict

from ._plan import PIN, SPREAD, LauncherConfigError, Plan, make_plan

if TYPE_CHECKING:
    # the launcher imports this module when it launches; this one only names its type
    from .ray_launcher import AutoMLRayLauncher

log = logging.getLogger(__name__)


@dataclass
class _Exited:
    """A job that called sys.exit (the CLI does, for a user error); the driver exits too."""

    code: Any


def launch(
    launcher: AutoMLRayLauncher,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> Sequence[JobReturn]:
    """Run every job as a Ray task; their JobReturns, in the order of job_overrides."""
    setup_globals()
    assert launcher.config is not None
    assert launcher.hydra_context is not None
    assert launcher.task_function is not None

    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)

    # composed here, before Ray starts: a bad override or setting fails in a second
    configs = []
    for offset, overrides in enumerate(job_overrides):
        cfg = launcher.hydra_context.config_loader.load_sweep_config(
            launcher.config, list(overrides)
        )
        with open_dict(cfg):
            cfg.hydra.job.num = initial_job_idx + offset
        configs.append(cfg)
    plan = make_plan(launcher.address, launcher.num_cpus, launcher.spread_jobs, configs)
    if plan.address is None:
        # as compute=local does
        from automl_runner.engine.compute import keep_local_ray_on_loopback

        keep_local_ray_on_loopback()
    import ray

    _connect(plan, launcher.init)
    log.info(
        "Ray launcher is launching %d jobs on %s, sweep output dir: %s",
        len(configs),
        ray.get_runtime_context().gcs_address,
        sweep_dir,
    )
    for cfg, overrides in zip(configs, job_overrides, strict=True):
        log.info("\t#%d : %s", cfg.hydra.job.num, " ".join(filter_overrides(overrides)))

    # what every job needs, put in the object store once instead of pickled per task
    shared = ray.put((launcher.hydra_context, launcher.task_function, Singleton.get_state()))
    options: dict[str, Any] = {
        "num_cpus": launcher.job_num_cpus,
        # a retried driver would run its whole experiment again, as a second parent run
        "max_retries": 0,
        "scheduling_strategy": _strategy(plan.placement),
        **launcher.remote,
    }
    task = ray.remote(_run_job).options(**options)
    cwd = os.getcwd()
    path = [os.path.abspath(p or cwd) for p in sys.path]
    # wrapped in a list so Ray hands the task the reference, not the value: the task
    # extends sys.path first, then unpickles what may live in the driver's modules
    refs = [task.remote([shared], cfg, cwd, path) for cfg in configs]
    try:
        results = ray.get(refs)
    except KeyboardInterrupt:
        # the jobs see KeyboardInterrupt too and end their MLflow runs as KILLED
        for ref in refs:
            ray.cancel(ref)
        raise

    exits = [r for r in results if isinstance(r, _Exited)]
    if exits:
        # every job has ended by now, so no MLflow run is left RUNNING by this exit
        sys.exit(exits[0].code)
    returns = [r for r in results if isinstance(r, JobReturn)]
    assert len(returns) == len(results)
    return returns


def _connect(plan: Plan, init: dict[str, Any]) -> None:
    import ray

    if ray.is_initialized():
        log.info("Ray launcher: reusing the Ray instance this process is connected to")
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, **init}
    if plan.address is None:
        # "local": a fresh instance, even if `ray start` left a cluster on this machine;
        # only this machine's processes use it, so it listens on loopback
        kwargs.setdefault("_node_ip_address", "127.0.0.1")
        ray.init(address="local", num_cpus=plan.num_cpus, **kwargs)
        return
    try:
        ray.init(address=plan.address, **kwargs)
    except Exception as ex:
        from automl_runner.errors import first_line

        first = first_line(ex)
        raise LauncherConfigError(
            f"{plan.address_key}={plan.address}: cannot join a Ray cluster there ({first}); "
            "start one with `ray start --head` and pass the address it prints"
        ) from ex


def _strategy(placement: str) -> Any:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if placement == PIN:
        # soft=False: never fall back to a node that cannot reach this machine's SQLite store
        node = ray.get_runtime_context().get_node_id()
        return NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    if placement == SPREAD:
        return "SPREAD"
    return "DEFAULT"


def _run_job(
    shared: list[Any], sweep_config: DictConfig, driver_cwd: str, driver_path: list[str]
) -> JobReturn | _Exited:
    """One job, inside a Ray worker: Hydra's globals restored, then Hydra's run_job."""
    import ray

    for entry in driver_path:
        if entry not in sys.path:
            sys.path.append(entry)
    hydra_context, task_function, singleton_state = ray.get(shared[0])
    setup_globals()
    Singleton.set_state(singleton_state)
    with open_dict(sweep_config):
        # the scheduler's id for this job, as Hydra's cluster launchers record it
        sweep_config.hydra.job.id = ray.get_runtime_context().get_task_id()
    HydraConfig.instance().set_config(sweep_config)

    worker_cwd = os.getcwd()
    # relative sweep dirs and files resolve as on the driver (when its folder is here)
    if os.path.isdir(driver_cwd):
        os.chdir(driver_cwd)
    try:
        ret = run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    except SystemExit as ex:
        return _Exited(ex.code)
    finally:
        # the worker process is reused by later tasks
        os.chdir(worker_cwd)
    return _portable(ret)


def _portable(ret: JobReturn) -> JobReturn:
    """A failed job's exception must survive pickling back to the driver."""
    if ret.status != JobStatus.FAILED:
        return ret
    import cloudpickle

    error = ret._return_value
    try:
        cloudpickle.dumps(error)
    except Exception:
        ret.return_value = RuntimeError(f"{type(error).__name__}: {error}")
    return ret
