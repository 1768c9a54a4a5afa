"""The `automl-runner` command: compose the config with Hydra and hand off."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import hydra
import hydra._internal.utils as hydra_utils
from omegaconf import DictConfig

from ..config import store as _store  # noqa: F401  (stores the schemas before composition)
from ..config.compose import one_line
from ..errors import Terminated, UserError
from ..tracking import schema

PROG = "automl-runner"
# the shell's codes for a command ended by SIGINT, by SIGTERM
INTERRUPTED = 130
TERMINATED = 143
# sysexits' EX_TEMPFAIL: the tracking server stayed away; the run waits in its journal
TRACKING_LOST = 75
_hydra_run_and_report = hydra_utils.run_and_report


@hydra.main(config_path="pkg://automl_runner.conf", config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ..experiment import Interrupted, TrackingLost, run_experiment

    try:
        if cfg.explain.only:
            from ..config.settings import settings
            from ..experiment import explain_finished_run

            explain_finished_run(settings(cfg), cfg.explain.only)
            return None
        hydra_cfg = HydraConfig.get()
        tags = {}
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # lets the sweep summary find this job's run, whatever launcher ran it
            tags = {
                schema.SWEEP_DIR: str(hydra_cfg.sweep.dir),
                schema.SWEEP_JOB: str(hydra_cfg.job.num),
            }
        result = run_experiment(
            cfg,
            list(hydra_cfg.overrides.task),
            tags=tags,
            output_dir=hydra_cfg.runtime.output_dir,
        )
    except UserError as ex:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        # exit from inside the job: Hydra would add a line of its own to a failed job
        _fail(str(ex))
        return None
    except TrackingLost as ex:
        sys.stderr.write(f"{PROG}: error: {ex}\n")
        sys.exit(TRACKING_LOST)
    except Interrupted as ex:
        # Ctrl-C twice or SIGTERM (before the search: once): the run is marked KILLED
        # already; no traceback
        sys.stderr.write(f"{PROG}: {ex}\n")
        sys.exit(TERMINATED if ex.terminated else INTERRUPTED)
    except KeyboardInterrupt as ex:  # outside an experiment (explain.only)
        terminated = isinstance(ex, Terminated)
        sys.stderr.write(f"{PROG}: {'terminated by SIGTERM' if terminated else 'interrupted'}\n")
        sys.exit(TERMINATED if terminated else INTERRUPTED)
    if result.status == "KILLED":
        # Ctrl-C once: the best so far is logged (see the summary), the run ended KILLED
        sys.stderr.write(
            f"{PROG}: stopped by Ctrl-C; run {result.parent_run_id} ended KILLED with the best "
            f"so far (resume it with automl.resume={result.parent_run_id})\n"
        )
        sys.exit(INTERRUPTED)
    # a sweeper optimising over runs reads this
    return result.best_score


def main() -> None:
    """Console entry point; user mistakes print one line and exit 2."""
    hydra_utils.run_and_report = _run_and_report
    try:
        _app()
    finally:
        hydra_utils.run_and_report = _hydra_run_and_report


def _run_and_report(func: Any) -> Any:
    try:
        return func()
    except Exception as ex:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        line = one_line(ex)
        if line is None:  # not a user mistake: Hydra shows the (trimmed) traceback
            error = ex

            def reraise() -> None:
                raise error

            return _hydra_run_and_report(reraise)
        _fail(line)


def _fail(line: str) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {line}\n")
    sys.exit(2)


if __name__ == "__main__":
    main()
