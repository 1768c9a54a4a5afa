"""One experiment: its phases, one module each, in DESIGN.md's order: ``setup``, the
search ``loop`` (with its ``budget`` and ``steering``), ``finishing`` (ensembles, refit,
model), ``explanation``, ``report``; ``run`` puts them together and ``record`` holds
what has finished. docs/architecture.md maps every step to its module.
"""

from .explanation import explain_finished_run
from .record import ExperimentResult, Interrupted, NoModelError, TrackingLost
from .run import run_experiment

__all__ = [
    "ExperimentResult",
    "Interrupted",
    "TrackingLost",
    "NoModelError",
    "explain_finished_run",
    "run_experiment",
]
