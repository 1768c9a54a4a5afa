"""Composing the config with Hydra, and Hydra's and OmegaConf's errors as one line each.

``compose`` is what the Python API and ``automl-ctl submit`` use; the command line
composes through ``hydra.main`` and reports errors with ``one_line`` too.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from hydra.errors import CompactHydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from ..errors import UserError
from . import store as _store  # noqa: F401  (stores the schemas before composition)

if TYPE_CHECKING:
    from omegaconf import DictConfig

# the package the YAML config groups ship in (conf/ in the repository)
CONFIG_MODULE = "automl_runner.conf"


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The experiment config for these overrides, composed exactly as the CLI does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton
    from hydra.errors import HydraException

    # composing creates Hydra's process-wide singletons (version base, job runtime,
    # plugins); put the caller's back afterwards so a later Hydra app starts clean
    saved = dict(Singleton._instances)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides or []))
    except (HydraException, OmegaConfBaseException) as ex:
        line = one_line(ex)
        if line is None:
            raise
        raise UserError(line) from ex
    finally:
        GlobalHydra.instance().clear()
        Singleton._instances.clear()
        Singleton._instances.update(saved)


def one_line(ex: BaseException) -> str | None:
    """The user-facing line for a config or data mistake; None for a bug."""
    if isinstance(ex, UserError):
        return str(ex)
    if isinstance(ex, MissingConfigException):
        return _missing_option(ex)
    if isinstance(ex, OverrideParseException):
        # Hydra's text is the parser's ("no viable alternative at input ..."): say which
        # override, and how one is written
        why = " ".join(str(ex.message).split()).split(" See https://")[0]
        return (
            f"{ex.override}: not an override Hydra can read ({why}); write key=value, "
            "quoting values with brackets, commas or spaces: 'key=[a,b]'"
        )
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
