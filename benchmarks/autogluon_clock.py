"""A fit callback for AutoGluon that notes when each model finished fitting (quality.py).

AutoGluon keeps its callbacks with the trainer it saves to disk, so the callback must
pickle by reference: a class of an importable module, not one local to a function. Only
the 'autogluon' system's child process (AutoGluon's own interpreter) imports this.
"""

from __future__ import annotations

import time
from typing import Any

from autogluon.core.callbacks import AbstractCallback


class FinishTimes(AbstractCallback):
    """Seconds from `start` (a time.perf_counter value) to the end of each model's fit:
    the best model's is AutoGluon's time to its final best."""

    def __init__(self, start: float) -> None:
        super().__init__()
        self.start = start
        self.finished: dict[str, float] = {}

    def _after_model_fit(self, trainer: Any, model_names: list[str], **kwargs: Any) -> bool:
        for model in model_names:
            self.finished[model] = time.perf_counter() - self.start
        return False  # never stop the fit
