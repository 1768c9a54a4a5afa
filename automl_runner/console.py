"""The console table the Azure AutoML notebooks made familiar, one row per iteration."""

from __future__ import annotations

import logging

log = logging.getLogger("automl_runner.console")

LEGEND = (
    "ITERATION: The iteration being evaluated.",
    "PIPELINE:  A summary description of the pipeline being evaluated.",
    "DURATION:  Time taken for the current iteration.",
    "METRIC:    The result of computing score on the fitted pipeline.",
    "BEST:      The best observed score thus far.",
)
_ROW = "{:>10}   {:<40} {:>9} {:>10} {:>10}"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def score(value: float | None) -> str:
    return "nan" if value is None or value != value else f"{value:.4f}"


def header(metric: str) -> None:
    rule = "*" * 95
    log.info(rule)
    for line in LEGEND:
        log.info(line)
    log.info("primary metric: %s", metric)
    log.info(rule)
    log.info(_ROW.format("ITERATION", "PIPELINE", "DURATION", "METRIC", "BEST"))


def row(
    iteration: int,
    pipeline: str,
    seconds: float,
    metric: float | None,
    status: str,
    best: float | None,
) -> None:
    shown = score(metric) if status == "COMPLETED" else status
    log.info(_ROW.format(iteration, pipeline[:40], duration(seconds), shown, score(best)))


def reason(text: str) -> None:
    """Why an iteration ended, on a line under its row, in the PIPELINE column."""
    log.info("%s%s", " " * 13, text)


_GUARDRAIL_ROW = "{:<18} {:<8} {}"


def guardrails(checks: list[tuple[str, str, str, bool]], seconds: float) -> None:
    """The data guardrails before the search, one row each: (name, status, detail,
    alerted); an alerted row is a warning, so it shows at automl.verbosity=WARNING too."""
    log.info("*" * 95)
    log.info("DATA GUARDRAILS (%.2f s)", seconds)
    log.info(_GUARDRAIL_ROW.format("GUARDRAIL", "STATUS", "DETAIL"))
    for name, status, detail, alerted in checks:
        log.log(
            logging.WARNING if alerted else logging.INFO,
            _GUARDRAIL_ROW.format(name, status, detail),
        )
