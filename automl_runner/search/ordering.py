"""The order finished iterations are told to the search in, which makes an iteration
budget reproducible (docs/budgets.md):

- ordered (an iteration budget): results are told in launch order, and the candidate
  launched k-th is asked only after exactly the first k - lag + 1 launches have been
  told, whatever finished first. The lag is 1 with one slot, 3 x the slots otherwise, so
  one long iteration holds back new launches only after that many more have started.
- unordered (a time budget: nothing is reproducible anyway): every result is told as it
  arrives, and no slot waits.
"""

from __future__ import annotations

from ..records import IterationResult
from .stopping import Stopper
from .strategy import Strategy


def tell_lag(slots: int) -> int:
    """How many launches a told result may lag behind (iteration budget): with one slot
    none; with several, a few rounds of them, so that one long iteration does not leave
    the other slots idle."""
    return 1 if slots == 1 else 3 * slots


class TellOrder:
    """Tells the strategy (and the stopper) what finished, in the order above."""

    def __init__(self, strategy: Strategy, stopper: Stopper, *, ordered: bool, slots: int) -> None:
        self.strategy, self.stopper = strategy, stopper
        self.ordered = ordered
        self.lag = tell_lag(slots)
        # iteration numbers in launch order, and the finished ones waiting for their turn
        self.launched: list[int] = []
        self.waiting: dict[int, IterationResult] = {}
        self.told = 0

    def replay(self, r: IterationResult) -> None:
        """An iteration an earlier driver finished (a resumed experiment), in its order."""
        self.launched.append(r.iteration)
        self._tell(r)

    def launch(self, iteration: int) -> None:
        self.launched.append(iteration)

    def finished(self, r: IterationResult) -> None:
        if self.ordered:
            self.waiting[r.iteration] = r
        else:
            self._tell(r)

    def asks(self, free: int) -> int:
        """How many candidates to ask for now, with `free` slots (and iterations) to fill:
        ordered, one once the launches it must follow are told (0 until then); unordered,
        all of them."""
        if not self.ordered:
            return free
        need = max(0, len(self.launched) - self.lag + 1)
        self._tell_upto(need)
        if self.told < need or self.stopper.reason is not None:
            return 0
        return min(1, free)

    def flush(self) -> None:
        """Tell whatever finished and is still waiting (the search is over)."""
        self._tell_upto(len(self.launched))

    def _tell_upto(self, upto: int) -> None:
        while self.told < upto and self.launched[self.told] in self.waiting:
            self._tell(self.waiting.pop(self.launched[self.told]))

    def _tell(self, r: IterationResult) -> None:
        self.strategy.tell(r)
        self.stopper.observe(r)
        self.told += 1
