"""The Launcher Hydra instantiates for `hydra/launcher=ray`; the work happens in ``_core``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class AutoMLRayLauncher(Launcher):
    """Runs every job of a sweep as a Ray task and returns their JobReturns in order."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        job_num_cpus: float = 0.0,
        spread_jobs: bool = False,
        init: Any = None,
        remote: Any = None,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.job_num_cpus = job_num_cpus
        self.spread_jobs = spread_jobs
        # plain dicts: they go to ray.init / .options() as keyword arguments
        self.init: dict[str, Any] = _plain(init)
        self.remote: dict[str, Any] = _plain(remote)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        # imported here, not at module level: plugin discovery must not import Ray
        from . import _core

        return _core.launch(self, job_overrides, initial_job_idx)


def _plain(node: Any) -> dict[str, Any]:
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        container = OmegaConf.to_container(node, resolve=True)
        assert isinstance(container, dict)
        return {str(k): v for k, v in container.items()}
    return dict(node)
