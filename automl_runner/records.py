"""The records every layer passes around: what to try, the data it is tried on, what came
of it. Plain data; this module imports nothing else of the package.

A ``Candidate`` goes from the search to a worker; the worker returns an
``IterationResult``; ``PreparedData`` is what every iteration reads, put into the object
store once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# what an iteration ended as
COMPLETED, FAILED, TIMEOUT, CANCELLED = "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"
# stopped past its memory limit (compute.memory_mb_per_iteration): finished, failed, not rerun
MEMOUT = "MEMOUT"
# a voting ensemble whose selection kept one member alone: not built, never recorded
SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class Candidate:
    """One pipeline to try: a preprocessor and an estimator with their arguments."""

    preprocessor: str
    preprocessor_target: str
    preprocessor_params: dict[str, Any]
    estimator: str
    estimator_target: str
    estimator_params: dict[str, Any]
    description: str
    # which family, for allowed/blocked lists and the leaderboard
    family: str = ""
    # where the candidate came from: portfolio, tpe, random or ensemble
    origin: str = ""
    # an ensemble (VotingEnsemble, StackEnsemble): its member candidates, the iterations
    # they came from and their voting weights; `meta` is the stacking ensemble's final
    # estimator, already fitted on the members' out-of-fold predictions
    members: tuple[Candidate, ...] = ()
    member_iterations: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    meta: Any = field(default=None, compare=False, repr=False)
    # the estimator takes class labels 0..k-1 only: fit it behind a label encoder
    encode_labels: bool = False
    # the estimator's keyword for the categorical columns' names, which it gets as
    # integer codes (no scaling step); "": they are one-hot encoded
    native_categorical: str = ""

    def key(self) -> str:
        """What makes two candidates the same point of the search space."""
        return json.dumps(
            [
                self.preprocessor,
                self.preprocessor_params,
                self.estimator,
                self.estimator_params,
                list(self.member_iterations),
                list(self.weights),
            ],
            sort_keys=True,
            default=str,
        )

    def to_json(self) -> str:
        """Every field, so a resumed experiment rebuilds this exact candidate from MLflow.

        An ensemble's fitted stacker (`meta`) is not kept: a resumed experiment rebuilds
        its ensembles from its own iterations.
        """
        fields = asdict(self)
        _drop_meta(fields)
        return json.dumps(fields, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> Candidate:
        return cls._from_dict(json.loads(text))

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Candidate:
        d = dict(d)
        d["members"] = tuple(cls._from_dict(m) for m in d.get("members", ()))
        d["member_iterations"] = tuple(d.get("member_iterations", ()))
        d["weights"] = tuple(d.get("weights", ()))
        d.pop("meta", None)
        return cls(**d)

    def params(self) -> dict[str, Any]:
        """Flat name -> value, as logged to MLflow."""
        if self.members:
            return {
                "ensemble": self.estimator,
                "ensemble.iterations": ",".join(map(str, self.member_iterations)),
                "ensemble.weights": ",".join(f"{w:g}" for w in self.weights),
                "ensemble.members": " | ".join(m.description for m in self.members),
            }
        out: dict[str, Any] = {"preprocessor": self.preprocessor, "estimator": self.estimator}
        out.update({f"preprocessor.{k}": v for k, v in self.preprocessor_params.items()})
        out.update({f"estimator.{k}": v for k, v in self.estimator_params.items()})
        return out


def _drop_meta(fields: dict[str, Any]) -> None:
    fields.pop("meta", None)
    for member in fields.get("members", ()):
        _drop_meta(member)


@dataclass
class PreparedData:
    """Everything an iteration reads; put into the Ray object store once."""

    X: Any
    y: np.ndarray
    X_valid: Any
    y_valid: np.ndarray | None
    sample_weight: np.ndarray | None
    # (train_idx, valid_idx) per fold; empty when X_valid is the validation set
    splits: list[tuple[np.ndarray, np.ndarray]]
    task: str
    primary_metric: str
    classes: np.ndarray | None
    y_range: float
    preprocess: bool
    numeric: list[str]
    categorical: list[str]
    seed: int
    # whether X or X_valid has missing values: without any (and without categorical
    # columns) the pipeline has no imputation step, which would copy the data twice
    impute: bool = True
    # columns of dates (dates.py), turned into numbers in the pipeline's prepare step
    dates: list[str] = field(default_factory=list)

    def oof_rows(self) -> np.ndarray:
        """Rows of the validation predictions an iteration keeps, in the order it keeps them.

        CV: every training row, fold after fold; one split: its validation rows; X_valid:
        indices into X_valid.
        """
        if self.X_valid is not None:
            return np.arange(self.X_valid.shape[0])
        return np.concatenate([valid for _, valid in self.splits])


@dataclass
class IterationResult:
    """What one iteration (or ensemble) came to: small, so it travels back from a task."""

    iteration: int
    candidate: Candidate
    status: str
    # metric name -> one score per fold
    fold_scores: dict[str, list[float]] = field(default_factory=dict)
    duration: float = 0.0
    node: str = ""
    log: str = ""
    error: str | None = None
    # validation predictions on PreparedData.oof_rows(): class scores (n, classes) or
    # predictions (n,); the ensembles are built from them without refitting anything
    oof: np.ndarray | None = None
    # whether oof holds probabilities (soft voting and stacking need them)
    oof_proba: bool = False
    # what the candidate costs (worker.iteration.Cost): a fold's fit, predicting 1,000
    # rows, the pickled model; None where not measured (ensembles)
    fit_seconds: float | None = None
    predict_seconds_per_1000: float | None = None
    model_bytes: int | None = None

    @property
    def is_ensemble(self) -> bool:
        return bool(self.candidate.members)

    def mean(self, metric: str) -> float | None:
        scores = self.fold_scores.get(metric)
        if not scores or self.status != COMPLETED:
            return None
        return float(np.nanmean(scores)) if not np.all(np.isnan(scores)) else float("nan")

    def std(self, metric: str) -> float | None:
        scores = self.fold_scores.get(metric)
        if not scores or self.status != COMPLETED:
            return None
        return float(np.nanstd(scores)) if not np.all(np.isnan(scores)) else float("nan")


def ended(
    iteration: int, candidate: Candidate, status: str, why: str, seconds: float = 0.0
) -> IterationResult:
    """The result of an iteration that did not run to its end (killed, cancelled, lost):
    `why` is its error and its log."""
    return IterationResult(iteration, candidate, status, duration=seconds, error=why, log=why)


def counts(results: list[IterationResult]) -> dict[str, int]:
    """Search iterations by status, and the ensemble iterations (which do not count
    toward automl.iterations) apart."""
    search = [r for r in results if not r.is_ensemble]
    return {
        "completed": sum(r.status == COMPLETED for r in search),
        "failed": sum(r.status == FAILED for r in search),
        "timed_out": sum(r.status == TIMEOUT for r in search),
        "cancelled": sum(r.status == CANCELLED for r in search),
        "memout": sum(r.status == MEMOUT for r in search),
        "ensembles": len(results) - len(search),
    }
