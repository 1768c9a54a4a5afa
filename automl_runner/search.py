"""Search strategies behind one ask/tell interface.

``ask(k)`` returns up to k candidates (k = free slots), ``tell(result)`` reports one
finished iteration. A strategy never learns how many iterations run at once or where,
so the same seed gives the same candidates at any concurrency.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .space import Candidate, SearchSpace


class Strategy(Protocol):
    def ask(self, n: int) -> list[Candidate]: ...

    # also told candidates it never asked (a resumed experiment's finished iterations);
    # a strategy must not propose those again
    def tell(self, candidate: Candidate, score: float | None) -> None: ...


class PortfolioRandomSearch:
    """Each family's cheap default first (in a seeded order), then random sampling.

    The portfolio pairs every estimator family with the first preprocessor that suits
    it, so the first few iterations already cover every family at a strong setting.
    """

    def __init__(self, space: SearchSpace, seed: int, max_tries: int = 50) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.max_tries = max_tries
        self.seen: set[str] = set()
        default_pre = next(
            (p for p in space.preprocessors if p.key == "standard_scaler"), space.preprocessors[0]
        )
        order = self.rng.permutation(len(space.estimators))
        self.portfolio = [
            space.candidate(
                default_pre, space.estimators[i], {}, space.estimators[i].default, "portfolio"
            )
            for i in order
        ]

    def ask(self, n: int) -> list[Candidate]:
        out = []
        for _ in range(n):
            # a resumed experiment told us some portfolio entries already ran
            while self.portfolio and self.portfolio[0].key() in self.seen:
                self.portfolio.pop(0)
            candidate = self.portfolio.pop(0) if self.portfolio else self._sample()
            self.seen.add(candidate.key())
            out.append(candidate)
        return out

    def tell(self, candidate: Candidate, score: float | None) -> None:
        # random search does not learn from scores (a model-based strategy would update
        # here); it only never proposes a candidate it was told about again
        self.seen.add(candidate.key())

    def _sample(self) -> Candidate:
        candidate = None
        for _ in range(self.max_tries):
            est = self.space.estimators[int(self.rng.integers(len(self.space.estimators)))]
            pre = self.space.preprocessors[int(self.rng.integers(len(self.space.preprocessors)))]
            candidate = self.space.candidate(
                pre, est, pre.sample(self.rng), est.sample(self.rng), "random"
            )
            if candidate.key() not in self.seen:
                break
        assert candidate is not None
        return candidate
