"""The README's pictures of the MLflow UI, made from a fresh run.

Runs an experiment (breast_cancer, a held-out test set, the model registered) in a
temporary folder, starts `mlflow ui` on its store at 127.0.0.1, and takes screenshots
with headless Chromium (Debian's `chromium` package: `apt-get install chromium`) of the
parent run's page (its description, metrics and datasets) and of the model registry's
page; the evaluation charts and the explanation's plots are copied from the run's
artifacts as they are. Everything lands in docs/images/.

    python benchmarks/screenshots.py [--out docs/images] [--iterations 20]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# charts and plots copied from the parent run's artifacts
COPIED = [
    "evaluation/roc.png",
    "evaluation/confusion_matrix.png",
    "evaluation/metric_by_iteration.png",
    "explanation/summary_beeswarm.png",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_experiment(work: Path, iterations: int) -> tuple[str, str, str]:
    """(store URI, experiment id, parent run id) of a fresh run in `work`."""
    cmd = [
        shutil.which("automl-runner") or "automl-runner",
        "data=breast_cancer",
        f"automl.iterations={iterations}",
        "automl.test_size=0.2",
        "tracking.register_model=breast-cancer",
    ]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=True)
    parent = next(
        line.split()[2] for line in out.stdout.splitlines() if line.startswith("MLflow run:")
    )
    store = f"sqlite:///{work / 'outputs' / 'mlflow' / 'mlflow.db'}"
    from mlflow import MlflowClient

    experiment = MlflowClient(store).get_run(parent).info.experiment_id
    return store, experiment, parent


def _start_ui(store: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow ui did not start")


def _screenshot(url: str, path: Path, profile: Path, size: str = "1400,1600") -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("screenshots: no chromium on PATH (apt-get install chromium)")
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            # the UI is a single-page app: give it time to fetch and render the run
            "--virtual-time-budget=20000",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    print(f"{path}  <- {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="screenshots-"))
    try:
        store, experiment, parent = _run_experiment(work, args.iterations)
        from mlflow import MlflowClient

        client = MlflowClient(store)
        for artifact in COPIED:
            local = client.download_artifacts(parent, artifact, str(work))
            target = args.out / artifact.replace("/", "_")
            shutil.copy(local, target)
            print(f"{target}  <- {artifact}")
        port = _free_port()
        ui = _start_ui(store, port)
        try:
            base = f"http://127.0.0.1:{port}/#/experiments/{experiment}"
            _screenshot(f"{base}/runs/{parent}", args.out / "run_page.png", work / "profile")
            _screenshot(
                f"{base}/runs/{parent}/artifacts",
                args.out / "run_artifacts.png",
                work / "profile",
                size="1400,1000",
            )
            _screenshot(
                f"http://127.0.0.1:{port}/#/models/breast-cancer",
                args.out / "registered_model.png",
                work / "profile",
                size="1400,800",
            )
        finally:
            ui.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
