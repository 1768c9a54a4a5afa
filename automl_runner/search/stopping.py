"""When the search ends before its budget: the exit score is reached, the best score is
the metric's best possible (a perfect CV score cannot improve), the best score has not
improved for ``automl.early_stopping_patience`` told iterations (never during the
portfolio of first tries; on by default for an iteration budget only, docs/budgets.md),
or the space has nothing left to try."""

from __future__ import annotations

from ..config.schema import AutoMLConfig
from ..metrics import better, perfect
from ..records import IterationResult


class Stopper:
    """Sees every result the search is told, in that order; `reason` is why the search
    should end (None: go on)."""

    def __init__(self, automl: AutoMLConfig, portfolio: int) -> None:
        self.metric = automl.primary_metric
        self.exit_score = automl.experiment_exit_score
        self.patience = automl.early_stopping_patience if automl.enable_early_stopping else None
        # the search's first tries (every family's default): never cut short
        self.portfolio = portfolio
        self.told = 0
        self.best: float | None = None
        self.since_best = 0
        self.reason: str | None = None

    def observe(self, r: IterationResult) -> None:
        self.told += 1
        score = r.mean(self.metric)
        if score is not None and better(self.metric, score, self.best):
            self.best, self.since_best = score, 0
        else:
            self.since_best += 1
        if (
            self.exit_score is not None
            and self.best is not None
            and not better(self.metric, float(self.exit_score), self.best)
        ):
            self.reason = (
                f"automl.experiment_exit_score={self.exit_score} reached ({self.best:.4f})"
            )
        elif self.best is not None and perfect(self.metric, self.best):
            self.reason = f"a perfect {self.metric} ({self.best:g}): nothing can score better"
        elif (
            self.patience is not None
            and self.told >= max(self.portfolio, self.patience)
            and self.since_best >= self.patience
        ):
            self.reason = (
                f"early stopping: no improvement in {self.since_best} iterations "
                f"(automl.early_stopping_patience={self.patience})"
            )

    def used_up(self) -> None:
        """The strategy has no untried candidate left."""
        self.reason = "every candidate in the search space has been tried"
