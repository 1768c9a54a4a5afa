"""Keep every Ray process these tests start on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from system.loopback import free_port

from automl_runner.engine.fake_cluster import ensure_token

# Ray swaps 127.0.0.1 for this machine's outward IP unless clusters are "disabled" (the
# loopback-only mode); token auth is what `ray start` enables, so clients present it too.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_USAGE_STATS_ENABLED": "0",
}


@contextmanager
def loopback_ray() -> Iterator[None]:
    """Set RAY_ENV for this process and its children; shut down Ray started meanwhile."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in RAY_ENV.items():
            mp.setenv(key, value)
        if "ray" in sys.modules:
            # read at import time; an earlier test module may have imported Ray already
            from ray._private import ray_constants

            mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        try:
            yield
        finally:
            if "ray" in sys.modules:
                import ray

                ray.shutdown()


@contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[str]:
    """A one-node cluster started as a user starts a head node; yields its address."""
    port = free_port()
    ensure_token({**os.environ, **RAY_ENV})
    proc = subprocess.Popen(
        [
            "ray",
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **RAY_ENV},
    )
    address = f"127.0.0.1:{port}"
    try:
        _wait_until_joinable(address)
        yield address
    finally:
        # only the process started here; never `ray stop`, which ends everyone's Ray
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_until_joinable(address: str) -> None:
    deadline = time.monotonic() + 90
    probe = None
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [sys.executable, "-c", f"import ray; ray.init(address='{address}')"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **RAY_ENV},
        )
        if probe.returncode == 0:
            return
        time.sleep(1)
    pytest.fail(f"ray head at {address} did not come up: {probe.stderr[-2000:] if probe else ''}")
