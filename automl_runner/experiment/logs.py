"""Where the experiment's log lines go: the console at ``automl.verbosity``, and a DEBUG
file for ``automl.debug_log``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..config.schema import AutoMLConfig


@contextmanager
def console_and_debug_log(automl: AutoMLConfig) -> Iterator[None]:
    """Console level from automl.verbosity, plus a DEBUG file for automl.debug_log.

    Restores every logger and handler it touched, so experiments run one after another
    (a sweep, a notebook) do not stack handlers.
    """
    level = getattr(logging, str(automl.verbosity).upper())
    pkg = logging.getLogger("automl_runner")
    saved_level, saved_propagate = pkg.level, pkg.propagate
    added: list[logging.Handler] = []
    relevelled: list[logging.Handler] = []
    if not logging.getLogger().handlers and not pkg.handlers:
        # a notebook or plain script: show the table on stdout
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        added.append(handler)
        pkg.propagate = False
    pkg.setLevel(level)
    if automl.debug_log:
        # the logger lets DEBUG through to the file; console handlers keep `verbosity`
        for h in logging.getLogger().handlers + pkg.handlers + added:
            if h.level == logging.NOTSET:
                h.setLevel(level)
                relevelled.append(h)
        debug = logging.FileHandler(automl.debug_log)
        debug.setLevel(logging.DEBUG)
        debug.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        added.append(debug)
        pkg.setLevel(logging.DEBUG)
    for h in added:
        pkg.addHandler(h)
    try:
        yield
    finally:
        for h in added:
            pkg.removeHandler(h)
            h.close()
        for h in relevelled:
            h.setLevel(logging.NOTSET)
        pkg.setLevel(saved_level)
        pkg.propagate = saved_propagate
