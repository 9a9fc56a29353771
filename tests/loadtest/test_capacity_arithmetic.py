"""``sbcntrctl capacity`` prints the arithmetic it does, and refuses impossible inputs."""

from __future__ import annotations

import math
import re

import pytest

from sbcntrctl.__main__ import build_parser
from sbcntrctl.loadtest import capacity

# ceil(10 / 87.5) = 1, ceil(10 x 3 / 87.5) = 1
CEIL = re.compile(r"ceil\(([\d.]+)(?: x ([\d.]+))? / ([\d.]+)\) = (\d+)")
# max(2, ceil(...) = 1) = 2
MAX = re.compile(r"max\((\d+), ceil\([^)]*\) = (\d+)\) = (\d+)")


def step(cpu_ms_per_request: float = 2.0) -> capacity.Step:
    """A 10 s step at 20 req/s whose backend used ``cpu_ms_per_request`` per request."""
    return capacity.Step(
        phase=1,
        name="step 1",
        target_rps=20,
        users=40,
        measured_from=100.0,
        measured_to=110.0,
        requests=200,
        failures=0,
        rps=20.0,
        p50_ms=40,
        p95_ms=50,
        p99_ms=60,
        max_ms=70,
        cpu_seconds={"backend": 200 * cpu_ms_per_request / 1000},
    )


def checked(lines: list[str]) -> str:
    """The arithmetic lines, each ceil and max redone from the printed figures."""
    text = "\n".join(lines)
    for numerator, factor, per_task, result in CEIL.findall(text):
        wanted = float(numerator) * float(factor or 1) / float(per_task)
        assert math.ceil(wanted) == int(result), f"ceil({wanted}) printed as {result}"
    for floor, ceiled, result in MAX.findall(text):
        assert max(int(floor), int(ceiled)) == int(result)
    return text


def test_a_count_raised_to_the_minimum_says_so() -> None:
    """10 req/s x 3 needs one 87.5 req/s task; two are kept for availability, printed as such."""
    result = capacity.recommend("backend", step(), rps=10, peak_factor=3, cpu_target=70)
    text = checked(result.arithmetic)
    assert (result.min_tasks, result.max_tasks) == (2, 2)
    assert "  min tasks = max(2, ceil(10 / 87.5) = 1) = 2" in result.arithmetic
    assert "  max tasks = max(2, ceil(10 x 3 / 87.5) = 1) = 2" in result.arithmetic
    assert "the smallest whose 2 tasks carry 10 req/s at 70% CPU (2 x 87.5 = 175.0)" in text


def test_a_requirement_no_size_carries_on_two_tasks_is_not_called_carried() -> None:
    result = capacity.recommend("backend", step(), rps=10000, peak_factor=3, cpu_target=70)
    text = checked(result.arithmetic)
    assert result.task_cpu == 1024
    assert result.rps_per_task == pytest.approx(350)
    assert (result.min_tasks, result.max_tasks) == (29, 86)
    assert "the smallest" not in text
    assert "2 of them carry only 2 x 350.0 = 700.0 of 10000 req/s" in text


@pytest.mark.parametrize(
    ("option", "value", "valid"),
    [
        ("--rps", "0", "above 0"),
        ("--rps", "-5", "above 0"),
        ("--rps", "nan", "above 0"),
        ("--peak-factor", "0.5", "of 1 or more"),
        ("--cpu-target", "150", "above 0, at most 100"),
        ("--cpu-target", "0", "above 0, at most 100"),
        ("--max-p95-ms", "0", "above 0"),
        ("--max-error-ratio", "1.5", "from 0 to 1"),
        ("--rps", "ten", "above 0"),
    ],
)
def test_impossible_inputs_are_refused_with_the_valid_range(
    option: str, value: str, valid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["capacity", option, value])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        error == f"sbcntrctl capacity: error: argument {option}: {value!r}: give a number {valid}"
    )


def test_the_edges_of_the_ranges_are_accepted() -> None:
    args = build_parser().parse_args(
        ["capacity", "--cpu-target", "100", "--peak-factor", "1", "--max-error-ratio", "0"]
    )
    assert (args.cpu_target, args.peak_factor, args.max_error_ratio) == (100, 1, 0)
