"""User-facing errors: each one prints as a single line and exits non-zero.

They subclass Hydra's ``CompactHydraException`` (so Hydra prints only the message unless
``HYDRA_FULL_ERROR=1``) and ``ValueError`` (so notebook users can catch them plainly).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from hydra.errors import CompactHydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException


class UserError(CompactHydraException, ValueError):
    """A mistake in the user's config or data; the message is the whole story."""


class ConfigError(UserError):
    """A config key holds a value that is not allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={_show(value)}: {allowed}")


class DataError(UserError):
    """The data (a script, a file, or what they return) cannot be used."""

    def __init__(self, source: str, problem: str) -> None:
        self.source, self.problem = source, problem
        super().__init__(f"{source}: {problem}")


class ComputeError(UserError):
    """The compute target cannot be reached or is too small."""


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value else repr(value)
    return str(value)


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
