"""A run's verdict as ``locust -f loadtest/`` prints it, from its ``summary.json``.

The same lines come from a local run, from the master of a distributed run,
and from ``sbcntrctl loadtest ecs run`` once it has collected the master's
``summary.json`` from S3.
"""

from __future__ import annotations

from typing import Any


def render(summary: dict[str, Any]) -> list[str]:
    """The verdict's lines: missed thresholds, warnings, the run line, the generators."""
    lines = [f"THRESHOLD MISSED: {problem}" for problem in summary["missed"]]
    lines += [f"WARNING: {warning}" for warning in summary.get("warnings", [])]
    lines.append(
        f"run {summary['run_id']}: {summary['requests']} requests, {summary['failures']} failed, "
        f"p95 {summary['p95_ms']:.0f} ms, p99 {summary['p99_ms']:.0f} ms, "
        f"{summary['rps']:.2f} req/s over {summary['seconds']:.1f} s: "
        f"{'FAIL' if summary['missed'] else 'PASS'}"
    )
    generators = summary.get("generators", [])
    if generators:
        lines.append(
            "load generators: "
            + ", ".join(
                f"{g['name']} CPU {g['cpu_percent']:.0f}% (peak {g['peak_cpu_percent']:.0f}%)"
                + (" LOST" if g["lost"] else "")
                for g in generators
            )
        )
    return lines
