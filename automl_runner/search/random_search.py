"""Plain random sampling of family, preprocessor and hyperparameters: the baseline the
benchmarks compare the TPE search against (``automl.search=random``)."""

from __future__ import annotations

import numpy as np

from ..records import Candidate, IterationResult
from ..space import SearchSpace
from .points import untried


class RandomSearch:
    """Uniform over families and preprocessors, then each one's ranges; no learning."""

    def __init__(self, space: SearchSpace, seed: int, max_tries: int = 50) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.max_tries = max_tries
        self.seen: set[str] = set()

    def ask(self, n: int) -> list[Candidate]:
        out = []
        for _ in range(n):
            candidate = self._sample()
            if candidate is None:
                break
            self.seen.add(candidate.key())
            out.append(candidate)
        return out

    def tell(self, result: IterationResult) -> None:
        # no learning; only never propose again what was told (a resumed experiment)
        self.seen.add(result.candidate.key())

    def _sample(self) -> Candidate | None:
        for _ in range(self.max_tries):
            est = self.space.estimators[int(self.rng.integers(len(self.space.estimators)))]
            pre = self.space.preprocessors[int(self.rng.integers(len(self.space.preprocessors)))]
            candidate = self.space.candidate(
                pre, est, pre.sample(self.rng), est.sample(self.rng), "random"
            )
            if candidate.key() not in self.seen:
                return candidate
        # that many repeats in a row: a small space, maybe used up; draw from what is left
        left = [
            c
            for est in self.space.estimators
            for c in untried(self.space, self.space.preprocessors, est, self.seen, "random")
        ]
        return left[int(self.rng.integers(len(left)))] if left else None
