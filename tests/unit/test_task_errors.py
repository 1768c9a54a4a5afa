"""Ray's exceptions for a task it ended, as the one line an iteration's record keeps."""

from __future__ import annotations

import pytest
from ray.exceptions import NodeDiedError, OutOfMemoryError

from automl_runner.engine.task_errors import ended_by_ray

# Ray 2.60's memory-monitor text, cut to the lines read (the rest is its process table)
REPORT = (
    "1 worker(s) were killed due to the node running low on memory. Memory on the node "
    "(IP: 127.0.0.1, ID: 7a2a4b41) was 1.71GB used / 23.54GB limit (0.072547)\n"
    "OOM kill reason: Memory usage 1829695488B exceeded threshold of 1795461120B "
    "(7.1% of 25276510208B limit)\n"
    "Top 10 memory users: PID\tMEM(GB)\tCOMMAND\n"
)
# before Ray 2.56
OLD_REPORT = (
    "Task was killed due to the node running low on memory.\nMemory on the node (IP: "
    "10.0.0.5, ID: 3f2a) where the task (task ID: 1c, name=iteration 3, pid=812, memory "
    "used=11.2GB) was running was 30.41GB / 32.00GB (0.950359), which exceeds the memory "
    "usage threshold of 0.95. Ray killed this worker (ID: 9d) because it was the most "
    "recently scheduled task.\n"
)


@pytest.mark.parametrize(
    "text, used, threshold",
    [(REPORT, "1.71GB of 23.54GB", "(7.1%)"), (OLD_REPORT, "30.41GB of 32.00GB", "(0.95)")],
)
def test_a_task_killed_for_memory_is_one_line_with_the_node_and_its_threshold(
    text, used, threshold
):
    line = ended_by_ray(OutOfMemoryError(text), 2)
    assert "\n" not in line
    assert line.startswith("killed by Ray for memory (rerun up to compute.max_retries=2 time(s))")
    assert f"the node used {used}, over its memory usage threshold {threshold}" in line


def test_a_memory_report_ray_may_word_otherwise_still_says_memory():
    line = ended_by_ray(OutOfMemoryError("\nsomething new\nmore"), 0)
    assert line == (
        "killed by Ray for memory (rerun up to compute.max_retries=0 time(s)): "
        "over its memory usage threshold: something new"
    )


def test_a_lost_node_is_one_line():
    line = ended_by_ray(NodeDiedError("Task failed because its node died.\ndetails"), 2)
    assert line == (
        "its node died (rerun up to compute.max_retries=2 time(s)): "
        "Task failed because its node died."
    )
