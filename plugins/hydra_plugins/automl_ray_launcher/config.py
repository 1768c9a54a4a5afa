"""The `hydra/launcher=ray` option: the launcher's typed settings, stored in the ConfigStore."""

# No `from __future__ import annotations` here: Hydra's plugin scan runs this module
# before registering it in sys.modules, and dataclasses cannot read string annotations then.
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class RayLauncherConf:
    # the launcher class Hydra instantiates with the fields below
    _target_: str = "hydra_plugins.automl_ray_launcher.ray_launcher.AutoMLRayLauncher"
    # Ray address every job joins; null = compute.address when compute=ray, else a local instance
    address: str | None = None
    # CPUs of the local Ray instance the launcher starts; null = compute.num_cpus (null = all)
    num_cpus: int | None = None
    # CPUs a job's driver task reserves; 0 so N drivers never starve their own iterations
    job_num_cpus: float = 0.0
    # place job drivers on any node (Ray's SPREAD) instead of this one; needs tracking=server
    spread_jobs: bool = False
    # extra ray.init keyword arguments, e.g. {log_to_driver: false}; unused if Ray is running
    init: dict[str, Any] = field(default_factory=dict)
    # extra .options() for each job task, e.g. {memory: 2000000000}; these win over the above
    remote: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/launcher",
    name="ray",
    node=RayLauncherConf,
    provider="automl_ray_launcher",
)
