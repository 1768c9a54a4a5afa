"""The schemas stored in Hydra's ConfigStore, which the YAML options extend.

Imported (for its side effect) by whatever composes the config: the command line and
``config.compose``. The YAML files name ``/schema/<group>/<option>`` in their defaults.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from .schema import SCHEMAS, RunnerConfig


def register_configs() -> None:
    """Store the schemas; YAML options extend them via ``/schema/...`` defaults."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunnerConfig)
    for path, node in SCHEMAS.items():
        group, _, name = path.rpartition("/")
        cs.store(group=f"schema/{group}" if group else "schema", name=name, node=node)


register_configs()
