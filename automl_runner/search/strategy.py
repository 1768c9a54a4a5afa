"""The search strategies' interface: ask/tell, and the strategy ``automl.search`` names.

``ask(k)`` returns k candidates (k = free slots), or fewer once every point of the space
has been tried (the experiment then ends its search); ``tell(result)`` reports one
finished iteration. A strategy never learns how many iterations run at once or where;
the experiment loop decides which results it has seen before each ask (``ordering``), so
the same seed gives the same candidates whatever the timing. How each strategy chooses:
docs/search.md.
"""

from __future__ import annotations

from typing import Protocol

from ..records import Candidate, IterationResult
from ..space import SearchSpace


class Strategy(Protocol):
    # fewer than n only when the space has no untried candidate left
    def ask(self, n: int) -> list[Candidate]: ...

    # also told iterations it never asked for (a resumed experiment's finished ones);
    # a strategy must not propose those again
    def tell(self, result: IterationResult) -> None: ...


def make_strategy(name: str, space: SearchSpace, seed: int, metric: str) -> Strategy:
    """``tpe`` (portfolio, then per-family TPE) or ``random`` (the baseline)."""
    from .random_search import RandomSearch
    from .tpe import TPESearch

    if name == "random":
        return RandomSearch(space, seed)
    return TPESearch(space, seed, metric)


def portfolio_size(name: str, space: SearchSpace) -> int:
    """How many first tries the strategy spends on every family's default (never cut
    short by early stopping)."""
    return len(space.estimators) if name == "tpe" else 0
