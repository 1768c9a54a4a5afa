"""The `automl-runner` command: compose the config with Hydra and hand off."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from typing import Any, NoReturn

import hydra
import hydra._internal.utils as hydra_utils
from hydra.errors import CompactHydraException, MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from . import config as _config  # noqa: F401  (stores the schemas before composition)
from .errors import UserError

PROG = "automl-runner"
_hydra_run_and_report = hydra_utils.run_and_report


@hydra.main(config_path="pkg://automl_runner.conf", config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .experiment import run_experiment

    try:
        if cfg.explain.only:
            from .experiment import explain_finished_run

            explain_finished_run(cfg, cfg.explain.only)
            return None
        hydra_cfg = HydraConfig.get()
        tags = {}
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # lets the sweep summary find this job's run, whatever launcher ran it
            tags = {
                "automl.sweep_dir": str(hydra_cfg.sweep.dir),
                "automl.sweep_job": str(hydra_cfg.job.num),
            }
        result = run_experiment(cfg, list(hydra_cfg.overrides.task), tags=tags)
    except UserError as ex:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        # exit from inside the job: Hydra would add a line of its own to a failed job
        _fail(str(ex))
        return None
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


def one_line(ex: BaseException) -> str | None:
    """The user-facing line for a config or data mistake; None for a bug."""
    if isinstance(ex, UserError):
        return str(ex)
    if isinstance(ex, MissingConfigException):
        return _missing_option(ex)
    if isinstance(ex, CompactHydraException):
        cause = ex.__cause__
        if isinstance(cause, OmegaConfBaseException):
            return _omegaconf_line(cause, str(ex))
        return " ".join(str(ex).split())
    if isinstance(ex, OmegaConfBaseException):
        return _omegaconf_line(ex, "")
    return None


def _missing_option(ex: MissingConfigException) -> str:
    text = str(ex)
    found = re.search(r"Could not find '([^']+)'", text)
    missing = ex.missing_cfg_file or (found.group(1) if found else "")
    group, _, option = missing.rpartition("/")
    options = list(ex.options or re.findall(r"^\t(\S+)$", text, flags=re.M))
    if group and options:
        return f"{group}={option}: no such option; allowed: {', '.join(options)}"
    return " ".join(text.split("\n\n")[0].split())


def _omegaconf_line(ex: OmegaConfBaseException, context: str) -> str:
    key = getattr(ex, "full_key", None) or ""
    msg = str(getattr(ex, "msg", None) or ex).strip().splitlines()[0]
    if "not in struct" in msg or "not in '" in msg or "Key '" in msg and "not" in msg:
        allowed = _allowed_keys(getattr(ex, "object_type", None))
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"{key}: no such key{hint}"
    value = re.search(r"=(.*)$", context.strip().splitlines()[0]) if context else None
    shown = f"={value.group(1)}" if value and key else ""
    return f"{key}{shown}: {msg}" if key else " ".join((context + " " + msg).split())


def _allowed_keys(object_type: Any) -> list[str]:
    if object_type is not None and dataclasses.is_dataclass(object_type):
        return [f.name for f in dataclasses.fields(object_type) if f.name != "kind"]
    return []


if __name__ == "__main__":
    main()
