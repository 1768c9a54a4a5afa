"""Estimators that misbehave on purpose, to test failure handling through the real path.

They are added to the search space by config only (a `_target_` and a name), exactly as
a user adds a family.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class BrokenClassifier(ClassifierMixin, BaseEstimator):
    """Raises in fit."""

    def __init__(self, message: str = "this estimator always fails") -> None:
        self.message = message

    def fit(self, X, y):
        raise RuntimeError(self.message)


class SleepyClassifier(ClassifierMixin, BaseEstimator):
    """Sleeps in fit far longer than any test's iteration timeout."""

    def __init__(self, seconds: float = 600.0) -> None:
        self.seconds = seconds

    def fit(self, X, y):
        time.sleep(self.seconds)
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1.0 / len(self.classes_))

    def predict(self, X):
        return np.repeat(self.classes_[0], len(X))


def mark_attempt(folder: str | None) -> None:
    """Append "<Ray node id> <pid>" to `folder`/<task name> (the runner names an
    iteration's task "iteration N"): a test reads which iteration runs on which node, and
    (one worker process per attempt) how often it was started."""
    if not folder:
        return
    import ray

    context = ray.get_runtime_context()
    name = (context.get_task_name() or f"pid-{os.getpid()}").replace(" ", "-")
    with open(Path(folder) / name, "a") as f:
        f.write(f"{context.get_node_id()} {os.getpid()}\n")


def marks(folder: Path) -> dict[int, list[tuple[str, int]]]:
    """Iteration number -> the (node id, pid) of every fit `mark_attempt` wrote."""
    out: dict[int, list[tuple[str, int]]] = {}
    for path in folder.glob("iteration-*"):
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        out[int(path.name.split("-")[1])] = [(node, int(pid)) for node, pid in lines]
    return out


class SlowClassifier(ClassifierMixin, BaseEstimator):
    """Predicts class frequencies after sleeping in fit: a stand-in for a costly model.

    With `marks` (a folder), every fit says where it ran (``mark_attempt``)."""

    def __init__(self, seconds: float = 2.0, marks: str | None = None) -> None:
        self.seconds = seconds
        self.marks = marks

    def fit(self, X, y):
        mark_attempt(self.marks)
        time.sleep(self.seconds)
        self.classes_, counts = np.unique(y, return_counts=True)
        self.prior_ = counts / counts.sum()
        return self

    def predict_proba(self, X):
        return np.tile(self.prior_, (len(X), 1))

    def predict(self, X):
        return np.repeat(self.classes_[np.argmax(self.prior_)], len(X))


class HungryClassifier(ClassifierMixin, BaseEstimator):
    """Allocates `step_mb` more memory every `pause` seconds in fit, up to `limit_mb`,
    then predicts the majority class: an estimator too big for its node, which Ray's
    memory monitor kills at a threshold the test sets (the limit keeps a threshold that
    was never crossed from costing the machine more)."""

    def __init__(
        self,
        step_mb: int = 100,
        limit_mb: int = 4000,
        pause: float = 0.05,
        marks: str | None = None,
    ) -> None:
        self.step_mb, self.limit_mb, self.pause, self.marks = step_mb, limit_mb, pause, marks

    def fit(self, X, y):
        mark_attempt(self.marks)
        held = []
        for _ in range(self.limit_mb // self.step_mb):
            # ones, not zeros: every page written, so resident
            held.append(np.ones(self.step_mb * 1024 * 1024, dtype=np.uint8))
            time.sleep(self.pause)
        del held
        self.classes_, counts = np.unique(y, return_counts=True)
        self.prior_ = counts / counts.sum()
        return self

    def predict_proba(self, X):
        return np.tile(self.prior_, (len(X), 1))

    def predict(self, X):
        return np.repeat(self.classes_[np.argmax(self.prior_)], len(X))


class InfiniteProbaClassifier(ClassifierMixin, BaseEstimator):
    """Nearest class mean, with 'probabilities' that are +inf for the predicted class.

    Its iterations score (accuracy needs only the predicted labels) and join the
    ensembles' pool, but a stacker cannot be fitted on its predictions: an ensemble
    that fails while the search went fine.
    """

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict_proba(self, X):
        X = np.asarray(X, dtype=float)
        nearest = ((X[:, None, :] - self.means_[None]) ** 2).sum(axis=2).argmin(axis=1)
        return np.where(np.arange(len(self.classes_)) == nearest[:, None], np.inf, 0.0)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class ZeroToKClassifier(ClassifierMixin, BaseEstimator):
    """Refuses class labels other than 0..k-1, as XGBoost's classifier does; otherwise a
    logistic regression."""

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        labels = np.unique(y)
        if labels.dtype.kind not in "iu" or not np.array_equal(labels, np.arange(len(labels))):
            raise ValueError(f"expected class labels 0..{len(labels) - 1}, got {labels}")
        self.model_ = LogisticRegression(max_iter=1000).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)

    def predict(self, X):
        return self.model_.predict(X)


class SlowToExplainClassifier(ClassifierMixin, BaseEstimator):
    """Nearest class mean, whose predict_proba sleeps on a batch of more than `rows` rows
    (the kernel explainer's batches; cross-validation's folds are smaller): a stand-in for
    a model slow to explain. Before it sleeps it creates the file `marker` if given."""

    def __init__(self, rows: int = 500, seconds: float = 300.0, marker: str = "") -> None:
        self.rows, self.seconds, self.marker = rows, seconds, marker

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict_proba(self, X):
        X = np.asarray(X, dtype=float)
        if len(X) > self.rows:
            if self.marker:
                open(self.marker, "w").close()
            time.sleep(self.seconds)
        distance = ((X[:, None, :] - self.means_[None]) ** 2).sum(axis=2)
        weights = np.exp(-(distance - distance.min(axis=1, keepdims=True)))
        return weights / weights.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class UnboundedClassifier(ClassifierMixin, BaseEstimator):
    """Allocates `step_mb` more every `pause` seconds in fit, with no end of its own (a
    safety stop at `safety_mb` keeps a broken memory limit from costing the machine);
    with `trace` (a file) every step appends "<epoch seconds> <private bytes>", so a test
    reads when the process passed its limit and when it was stopped. `stubborn`: it
    swallows the MemoryError the memory limit raises and allocates on."""

    def __init__(
        self,
        step_mb: int = 50,
        pause: float = 0.02,
        safety_mb: int = 6000,
        trace: str | None = None,
        stubborn: bool = False,
    ) -> None:
        self.step_mb, self.pause, self.safety_mb = step_mb, pause, safety_mb
        self.trace, self.stubborn = trace, stubborn

    def fit(self, X, y):
        from automl_runner.worker.memory_guard import private_bytes

        held: list = []
        deadline = time.monotonic() + 120
        while len(held) * self.step_mb < self.safety_mb and time.monotonic() < deadline:
            try:
                try:
                    held.append(np.ones(self.step_mb * 1024 * 1024, dtype=np.uint8))
                except MemoryError:
                    if not self.stubborn:
                        raise
                if self.trace:
                    with open(self.trace, "a") as f:
                        f.write(f"{time.time()} {private_bytes()}\n")
                time.sleep(self.pause)
            except MemoryError:
                if not self.stubborn:
                    raise
        raise RuntimeError(f"allocated {len(held) * self.step_mb} MB and was never stopped")
