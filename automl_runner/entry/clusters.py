"""`automl-ctl cluster up|status|down`: a compute=cluster cluster that outlives one
experiment. The same overrides name it as for `automl-runner`; an experiment (or a
submitted one) whose compute names a cluster that is up joins it and leaves it up.
"""

from __future__ import annotations

import shlex

from ..config.compose import compose
from ..config.schema import ClusterCompute
from ..config.settings import settings
from ..config.validate import validate
from ..engine import provision
from ..errors import ConfigError


def cluster_config(overrides: list[str]) -> ClusterCompute:
    """The compute group these overrides compose, which must be compute=cluster."""
    cfg = settings(compose(overrides))
    validate(cfg)
    if not isinstance(cfg.compute, ClusterCompute):
        raise ConfigError(
            "compute", cfg.compute.kind, "automl-ctl cluster needs compute=cluster and its keys"
        )
    return cfg.compute


def cluster_command(action: str, overrides: list[str]) -> int:
    """One action on the cluster; the exit code (1: status of a cluster that is not up)."""
    c = cluster_config(overrides)
    # the same overrides name the same cluster (its state_dir, its head_port) next time
    again = shlex.join(overrides)
    if action == "up":
        state, started = provision.up(c)
        print(
            f"cluster {c.cluster_name} is {'up' if started else 'up already'}: head {state.address}"
        )
        print(f"{'run on it:':<17}automl-runner {again} ...")
        print(f"{'submit to it:':<17}automl-ctl submit {again} ...")
        print(f"{'tear it down:':<17}automl-ctl cluster down {again}")
        return 0
    if action == "down":
        gone = provision.down(c)
        print(f"cluster {c.cluster_name}: {'torn down' if gone else 'was not up'}")
        return 0
    found = provision.status(c)
    if found is None:
        print(f"cluster {c.cluster_name}: not up (automl-ctl cluster up {again})")
        return 1
    print(found)
    return 0
