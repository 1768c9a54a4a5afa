"""Memory and time of logging a large best model to MLflow.

    python benchmarks/model_logging.py [--rows 40000] [--repeats 3]

A random forest fitted on a generated regression set (`--rows` x 10, fully grown trees:
some hundreds of MB pickled, as forests on tens of thousands of rows are) is logged the
way an experiment logs its best model (`Tracker.log_model`), each time in a fresh process,
in two ways taken in turn:

* with the input example: MLflow saves the model, then loads it back to check that it
  predicts on the example (what the runner does for models under
  `tracking.EXAMPLE_MAX_MODEL_BYTES`, 256 MiB);
* with the signature only, inferred from the same rows (what it does from that size on).

Prints, for each, the median over `--repeats` of the process's peak USS while logging,
above what it held before (the model itself), and of the wall time of `log_model`.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MODES = ("example", "signature")


def child(mode: str, model_path: str, store: str) -> None:
    import psutil

    import automl_runner
    from automl_runner import tracking

    with open(model_path, "rb") as f:
        model, example = pickle.load(f)
    cfg = automl_runner.compose([f"tracking.store_dir={store}"])
    tracker = tracking.Tracker(cfg.tracking, "model-logging")
    tracker.start_parent("model-logging", {}, "", [], None, "r2_score")
    # the example path for any size, or the signature path for any size
    tracking.EXAMPLE_MAX_MODEL_BYTES = 2**62 if mode == "example" else 0
    me = psutil.Process()
    before = me.memory_full_info().uss
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], me.memory_full_info().uss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    tracker.log_model(model, example)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    print(f"{(peak[0] - before) / 1e9:.3f} {seconds:.2f} {tracking.model_bytes(model) / 1e9:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "MODEL", "STORE"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    import pandas as pd
    from sklearn.datasets import make_regression
    from sklearn.ensemble import RandomForestRegressor

    X, y = make_regression(args.rows, 10, noise=10.0, random_state=0)
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(10)])
    model = RandomForestRegressor(100, n_jobs=2, random_state=0).fit(X, y)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "model.pkl"
        with open(model_path, "wb") as f:
            pickle.dump((model, X.iloc[:5]), f, protocol=5)
        del model
        extra: dict[str, list[float]] = {m: [] for m in MODES}
        seconds: dict[str, list[float]] = {m: [] for m in MODES}
        size = 0.0
        for repeat in range(args.repeats):
            for mode in MODES:
                store = Path(tmp) / f"store-{repeat}-{mode}"
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, str(model_path), str(store)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                gb, s, size_gb = map(float, out.stdout.split()[-3:])
                extra[mode].append(gb)
                seconds[mode].append(s)
                size = size_gb
    from automl_runner.tracking.models import EXAMPLE_MAX_MODEL_BYTES

    med = {m: (statistics.median(extra[m]), statistics.median(seconds[m])) for m in MODES}
    print(
        f"logging a {size:.2f} GB forest ({args.rows} rows), median of {args.repeats}: "
        f"with the input example (loaded back by MLflow) +{med['example'][0]:.2f} GB peak, "
        f"{med['example'][1]:.1f} s; with the signature only (the runner's choice from "
        f"{EXAMPLE_MAX_MODEL_BYTES / 2**20:.0f} MiB on) +{med['signature'][0]:.2f} GB peak, "
        f"{med['signature'][1]:.1f} s"
    )


if __name__ == "__main__":
    main()
