"""The parent run's description (MLflow's ``mlflow.note.content``, Markdown, shown at the
top of the run page): the story of the experiment on one screen. Which pipeline won and
by how much (CV and test), the top of the leaderboard, what to watch out for in the data,
the features that matter, and the lines of Python that load the model.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import console
from ..tracking import schema
from .record import ExperimentResult

# the leaderboard rows the description shows
TOP_ROWS = 10
# MLflow's limit on a tag value
_LIMIT = 8000


def describe_run(result: ExperimentResult, board: pd.DataFrame) -> str:
    """The Markdown description of the experiment `result` holds."""
    metric = result.primary_metric
    lines = [f"## {result.status.lower()}: {_headline(result)}", ""]
    if result.best is not None:
        lines += _best(result, metric)
    lines += ["", f"### Leaderboard (top {min(TOP_ROWS, len(board))} of {len(board)})", ""]
    lines += _table(board.head(TOP_ROWS), metric)
    lines += ["", "### Data guardrails", ""]
    lines += [f"- **ALERTED** {a}" for a in result.guardrail_alerts] or ["- no alert"]
    top = _top_features(result.explanation)
    if top:
        lines += ["", "### Top features (mean |SHAP|)", ""]
        lines += [f"{k}. `{name}`: {value:.4g}" for k, (name, value) in enumerate(top, 1)]
    if result.model_uri:
        lines += [
            "",
            "### Use the model",
            "",
            "```python",
            "import mlflow",
            f'mlflow.set_tracking_uri("{result.tracking_uri}")',
            f'model = mlflow.sklearn.load_model("{result.model_uri}")',
            "```",
        ]
    text = "\n".join(lines) + "\n"
    return text if len(text) <= _LIMIT else text[: _LIMIT - 20] + "\n\n(cut short)\n"


def _headline(result: ExperimentResult) -> str:
    if result.best is None:
        return "no iteration completed"
    return f"{result.best.candidate.description} (iteration {result.best.iteration})"


def _best(result: ExperimentResult, metric: str) -> list[str]:
    assert result.best is not None
    out = [f"- **{metric}** (cross-validation): {console.score(result.best_score)}"]
    test = result.test_scores.get(schema.test_metric(metric))
    if test is not None:
        out.append(f"- **{metric}** (test set): {console.score(test)}")
    others = [
        f"{k.removeprefix('test_')} {console.score(v)}"
        for k, v in result.test_scores.items()
        if k != schema.test_metric(metric)
    ]
    if others:
        out.append(f"- other test metrics: {', '.join(others)}")
    completed = sum(1 for r in result.results if r.status == "COMPLETED")
    out.append(f"- {completed} of {len(result.results)} iterations completed")
    return out


def _table(board: pd.DataFrame, metric: str) -> list[str]:
    columns = [
        "iteration",
        "pipeline",
        metric,
        schema.FIT_SECONDS,
        schema.PREDICT_SECONDS_PER_1000,
        schema.MODEL_BYTES,
        "status",
    ]
    shown = board[[c for c in columns if c in board.columns]]
    head = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    rows = [
        "| " + " | ".join(_cell(v) for v in row) + " |"
        for row in shown.itertuples(index=False, name=None)
    ]
    return [head, rule, *rows]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4f}"
    return str(value).replace("|", "/")


def _top_features(explanation: dict[str, Any] | None, n: int = 5) -> list[tuple[str, float]]:
    if not explanation:
        return []
    # the seed's names: overall_summary holds the values, overall_imp the feature names
    values = explanation.get("overall_summary") or []
    names = explanation.get("overall_imp") or []
    return list(zip(names[:n], [float(v) for v in values[:n]], strict=False))
