"""What a tracking-server restart costs a run (docs/faults.md).

The same experiment (iris, 20 iterations, 2 at once, `tracking=server`, the rest at its
defaults) run side by side, alternately: once with the server up throughout, once with
the server killed (SIGKILL) after the 5th iteration and started again `--down` seconds
later. Prints each run's wall time, whether all 20 iterations and the model reached
MLflow, and the medians: the delay is the outage run's wall time minus the plain run's.

    python benchmarks/outage.py [--repeats 3] [--down 30]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ARGS = ["data=iris", "automl.iterations=20", "automl.max_concurrent_iterations=2"]


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{self.root / 'server.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("mlflow server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None


def one_run(server: Server, cwd: Path, name: str, down: float | None) -> dict:
    cmd = [
        shutil.which("automl-runner") or "automl-runner",
        "tracking=server",
        f"tracking.uri={server.url}",
        f"tracking.experiment_name={name}",
        *ARGS,
    ]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    rows, out = 0, []
    for line in proc.stdout:
        out.append(line)
        if re.match(r"\s+\d+\s{3}\S", line):
            rows += 1
            if down is not None and rows == 5:
                server.kill()
                time.sleep(down)
                server.start()
                down = None
    proc.wait()
    wall = time.monotonic() - started
    from mlflow import MlflowClient

    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    searched = [r for r in runs if r.data.tags.get("automl.kind") == "iteration"]
    complete = (
        proc.returncode == 0
        and len(parents) == 1
        and parents[0].info.status == "FINISHED"
        and len(searched) == 20
        and "automl.best_model_uri" in parents[0].data.tags
    )
    return {"wall": wall, "complete": complete, "rc": proc.returncode, "tail": "".join(out[-5:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--down", type=float, default=30.0, help="seconds the server is down")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="outage-bench-"))
    server = Server(root)
    server.start()
    plain, outage = [], []
    try:
        for i in range(args.repeats):
            for kind, down in (("plain", None), ("outage", args.down)):
                r = one_run(server, root, f"{kind}-{i}", down)
                (plain if down is None else outage).append(r["wall"])
                print(
                    f"{kind:7s} run {i}: {r['wall']:6.1f} s  exit {r['rc']}  "
                    f"all in MLflow: {'yes' if r['complete'] else 'NO'}",
                    flush=True,
                )
                if not r["complete"]:
                    print(r["tail"])
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)
    p, o = statistics.median(plain), statistics.median(outage)
    print(
        f"median wall: {p:.1f} s with the server up, {o:.1f} s with it down {args.down:.0f} s "
        f"after the 5th iteration; the outage delayed the run by {o - p:.1f} s "
        f"({args.repeats} runs each)"
    )


if __name__ == "__main__":
    main()
