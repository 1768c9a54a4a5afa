"""User-facing errors: each one prints as a single line and exits non-zero.

They subclass Hydra's ``CompactHydraException`` (so Hydra prints only the message unless
``HYDRA_FULL_ERROR=1``) and ``ValueError`` (so notebook users can catch them plainly).
"""

from __future__ import annotations

from typing import Any

from hydra.errors import CompactHydraException


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


class Terminated(KeyboardInterrupt):
    """SIGTERM ended the driver: a KeyboardInterrupt, so every path that ends a run on
    Ctrl-C (KILLED, what runs cancelled) ends it on SIGTERM too; the command exits 143."""


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value else repr(value)
    return str(value)


def first_line(ex: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type's name if it has none), cut to
    `limit` characters: what a one-line error shows of a library's exception."""
    text = str(ex).strip()
    return text.splitlines()[0][:limit] if text else type(ex).__name__
