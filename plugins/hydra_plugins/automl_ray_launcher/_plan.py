"""Where a sweep's jobs run, decided from the launcher settings and the jobs' configs.

Pure: no Ray import, so the rules are checked (and tested) before anything starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

# where the job drivers go: this node, anywhere (Ray's SPREAD), or wherever Ray likes
PIN, SPREAD, ANY = "pin", "spread", "any"


class LauncherConfigError(CompactHydraException, ValueError):
    """A launcher or job setting the launcher cannot honour; printed as one line."""


class SpreadJobsError(LauncherConfigError):
    """spread_jobs asked for drivers on other nodes, but the MLflow store is a local file."""


@dataclass(frozen=True)
class Plan:
    # Ray address to join; None = start a local instance
    address: str | None
    # the config key that named the address, for log lines and errors
    address_key: str | None
    # CPUs of the local instance; None = all of this machine's
    num_cpus: int | None
    # PIN, SPREAD or ANY
    placement: str


def make_plan(
    address: str | None,
    num_cpus: int | None,
    spread_jobs: bool,
    job_configs: Sequence[DictConfig],
) -> Plan:
    """Check the settings against every job and decide the Ray target and job placement."""
    # an embedded (SQLite) store lives on this machine's disk: drivers must stay here
    local_store = any(_select(c, "tracking.kind") == "local" for c in job_configs)
    if spread_jobs and local_store:
        raise SpreadJobsError(
            "hydra.launcher.spread_jobs=true: tracking.kind=local keeps the MLflow store in a "
            "SQLite file on this machine; placing job drivers on other nodes needs tracking=server "
            "(tracking.uri=http://MLFLOW_HOST:5000)"
        )
    placement = PIN if local_store else SPREAD if spread_jobs else ANY

    key: str | None = None
    if address:
        key = "hydra.launcher.address"
    else:
        clusters = {_cluster_address(c) for c in job_configs if _select(c, "compute.kind") == "ray"}
        if len(clusters) > 1:
            raise LauncherConfigError(
                f"compute.address={','.join(sorted(clusters))}: the jobs of one sweep run on one "
                "Ray cluster; sweep over one address, or set hydra.launcher.address"
            )
        if clusters:
            address, key = clusters.pop(), "compute.address"

    if address is None and num_cpus is None and job_configs:
        # the CPUs the user gave the job's own local instance, which this one replaces
        num_cpus = _select(job_configs[0], "compute.num_cpus")
    return Plan(address, key, None if address else num_cpus, placement)


def _cluster_address(cfg: DictConfig) -> str:
    address = _select(cfg, "compute.address")
    if not address:
        raise LauncherConfigError(
            "compute.address=???: compute=ray needs the address of a running Ray head, "
            "e.g. compute.address=HEAD_IP:6379"
        )
    return str(address)


def _select(cfg: DictConfig, key: str) -> Any:
    # throw_on_missing=False: a mandatory `???` value reads as None here
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
