"""Hydra launcher that runs each job of a multirun sweep as a Ray task (`hydra/launcher=ray`).

Discovery imports only ``config`` and ``ray_launcher``; Ray itself is imported by
``_core`` when a sweep launches, so ``--help`` and plain runs never pay for it.
"""

__version__ = "0.1.0"
