"""What Ray says when it, not the iteration, ended a task: one line for the record.

An iteration that raises returns its own FAILED result with the traceback
(``worker.iteration``); the exceptions here come from Ray itself when the task's worker
process or node is gone. Ray's text for them runs to dozens of lines (its memory report
lists the node's top processes), so the record's error is one line naming the cause and
what bounds the reruns; Ray's whole text stays in the iteration's log.
"""

from __future__ import annotations

import re

# Ray's memory-monitor report: "... was 1.71GB used / 23.54GB limit (0.0725)" and
# "OOM kill reason: ... exceeded threshold of 1795461120B (7.1% of ...B limit)"; before
# Ray 2.56 "... was running was 22.5GB / 23.5GB (0.95), which exceeds the memory usage
# threshold of 0.95"
_USED = re.compile(r"was ([\d.]+\s*[KMGT]?i?B)(?: used)? / ([\d.]+\s*[KMGT]?i?B)")
_THRESHOLD = re.compile(r"threshold of (?:\d+B \((\d+(?:\.\d+)?%)|(\d+(?:\.\d+)?))")


def ended_by_ray(ex: BaseException, max_retries: int) -> str:
    """One line: what ended the task (`ex`, raised by ray.get) after Ray's reruns."""
    from ray.exceptions import NodeDiedError, OutOfMemoryError, WorkerCrashedError

    text = str(ex)
    reruns = f"rerun up to compute.max_retries={max_retries} time(s)"
    if isinstance(ex, OutOfMemoryError):
        return f"killed by Ray for memory ({reruns}): {memory_report(text)}"
    if isinstance(ex, NodeDiedError):
        return f"its node died ({reruns}): {_first_line(text)}"
    if isinstance(ex, WorkerCrashedError):
        return f"its worker process died ({reruns}): {_first_line(text)}"
    return f"{type(ex).__name__}: {_first_line(text)}"


def memory_report(text: str) -> str:
    """The node's memory and the threshold it crossed, from Ray's memory-monitor text."""
    used, threshold = _USED.search(text), _THRESHOLD.search(text)
    limit = threshold and (threshold.group(1) or threshold.group(2))
    over = "over its memory usage threshold" + (f" ({limit})" if limit else "")
    if used:
        return (
            f"the node used {used.group(1)} of {used.group(2)}, {over}; reserve memory with "
            "compute.memory_mb_per_iteration or run fewer iterations at once"
        )
    return f"{over}: {_first_line(text)}"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no message"
