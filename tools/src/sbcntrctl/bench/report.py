"""Figures of a benchmark run: medians, same-round ratios, the targets, the tables."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Each configuration's ratio is taken against this baseline, in the same round.
BASELINES = {
    "fastapi": "raw-asgi",
    "backend-off": "fastapi",
    "backend-default": "backend-off",
    "backend-no-metrics": "backend-off",
    "backend-sampled": "backend-off",
    "bare-pair-routers": "bare-pair",
    "pair-off": "bare-pair",
    "pair-default": "pair-off",
    "pair-sampled": "bare-pair",
    # OpenTelemetry against the X-Ray SDK, same sampling: >= 1 is at least as fast.
    "backend-otel-default": "backend-default",
    "backend-otel-sampled": "backend-sampled",
    "pair-otel-default": "pair-default",
    "pair-otel-sampled": "pair-sampled",
}
# Ratios taken besides the baseline's, in the same rounds: everything on by
# default against the bare pair (the "done": our layers cost at most a
# quarter of a FastAPI pair's throughput).
OTHER_BASELINES = {"pair-default": ("bare-pair",)}
PROJECT_SERVICES = ("backend-", "pair-")
# The most a service's RSS may grow over the second half of the long run
# (~50,000 requests): 10 bytes a request. A process that keeps nothing per
# request settles in the first half (the backend: +0.0 to +0.1 MB over the
# second); keeping one small object per request (a float is 24 bytes, a short
# string about 50) exceeds it, and so does a growth of 15 bytes a request that
# continues at the same rate over 240,000 requests (measured on the frontend:
# +0.7 to +0.9 MB over 50,000, +1.8 MB over 120,000). The second half also
# drops about 400 connections (harness.SOAK_CHUNK_SECONDS): about 1.3 KB a
# connection, less than one kept connection's objects (2-4 KB).
SOAK_GROWTH_LIMIT_MB = 0.5


@dataclass(frozen=True)
class Target:
    name: str
    limit: str
    value: float | None
    met: bool | None

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "not measured"
        return "met" if self.met else "MISSED"


def median_of(samples: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], float]) -> float:
    return float(statistics.median(key(s) for s in samples))


def _median_cpu(group: list[dict[str, Any]], role: str) -> float:
    return float(statistics.median(s["cpu_us_per_request"][role] for s in group))


def by_config(samples: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        grouped.setdefault(sample["config"], []).append(sample)
    return grouped


def same_round_ratio(samples: list[dict[str, Any]], config: str, baseline: str) -> float | None:
    """Median over rounds of rps(config) / rps(baseline) in that round."""
    rounds: dict[int, dict[str, float]] = {}
    for sample in samples:
        rounds.setdefault(sample["round"], {})[sample["config"]] = sample["rps"]
    ratios = [r[config] / r[baseline] for r in rounds.values() if config in r and r.get(baseline)]
    return round(statistics.median(ratios), 3) if ratios else None


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Per configuration: medians, CPU and RSS per process, ratio to baseline."""
    samples = results["samples"]
    summary = {}
    for name, group in by_config(samples).items():
        roles = group[0]["cpu_us_per_request"].keys()
        baseline = BASELINES.get(name)
        summary[name] = {
            "rps": round(median_of(group, lambda s: s["rps"])),
            "p50_ms": round(median_of(group, lambda s: s["p50_ms"]), 2),
            "p99_ms": round(median_of(group, lambda s: s["p99_ms"]), 2),
            "errors": sum(s["errors"] for s in group),
            "cpu_us": {r: round(_median_cpu(group, r), 1) for r in roles},
            "rss_mb": {r: max(s["rss_mb"][r] for s in group) for r in roles},
            "baseline": baseline,
            "ratio": same_round_ratio(samples, name, baseline) if baseline else None,
            "ratios": {
                other: same_round_ratio(samples, name, other)
                for other in OTHER_BASELINES.get(name, ())
            },
        }
    return summary


def _added_cpu(summary: dict[str, Any], on: str, off: str, role: str) -> float | None:
    if on in summary and off in summary:
        return round(float(summary[on]["cpu_us"][role]) - float(summary[off]["cpu_us"][role]), 1)
    return None


def targets(
    summary: dict[str, Any],
    startup: dict[str, dict[str, float]],
    metrics_record_us: float | None = None,
    soak: dict[str, Any] | None = None,
) -> list[Target]:
    """The performance targets, each with its measured value and verdict.

    A target whose configurations (or long run, ``soak``) the run left out is
    "not measured".
    """

    def at_most(name: str, limit: float, value: float | None, unit: str = "") -> Target:
        met = None if value is None else value <= limit
        return Target(name, f"<= {limit:g}{unit}", value, met)

    def at_least(name: str, limit: float, value: float | None) -> Target:
        met = None if value is None else value >= limit
        return Target(name, f">= {limit:g}x", value, met)

    def ratio(config: str, baseline: str | None = None) -> float | None:
        figures = summary.get(config, {})
        value = (
            figures.get("ratio") if baseline is None else figures.get("ratios", {}).get(baseline)
        )
        return None if value is None else float(value)

    found = [
        at_least("pair-off / bare-pair (throughput)", 0.75, ratio("pair-off")),
        at_least("pair-default / pair-off (throughput)", 0.85, ratio("pair-default")),
        at_least("pair-default / bare-pair (throughput)", 0.75, ratio("pair-default", "bare-pair")),
        at_least("pair-sampled / bare-pair (throughput)", 0.5, ratio("pair-sampled")),
    ]
    added = {
        "backend alone": _added_cpu(summary, "backend-sampled", "backend-off", "front"),
        "frontend in pair": _added_cpu(summary, "pair-sampled", "pair-off", "front"),
        "backend in pair": _added_cpu(summary, "pair-sampled", "pair-off", "back"),
    }
    for where, value in added.items():
        found.append(at_most(f"logging + tracing CPU per request, {where}", 130, value, " µs"))
    found.append(
        at_most("EMF metrics CPU per request (record, in process)", 5, metrics_record_us, " µs")
    )
    for config in ("backend-sampled", "pair-sampled"):
        figures = summary.get(config)
        spread = round(figures["p99_ms"] / figures["p50_ms"], 2) if figures else None
        found.append(at_most(f"p99 / p50, {config}", 3, spread, "x"))
    rss = [
        value
        for name, figures in summary.items()
        if name.startswith(PROJECT_SERVICES)
        for value in figures["rss_mb"].values()
    ]
    found.append(at_most("RSS per service after the run", 90, max(rss) if rss else None, " MB"))
    found += _soak_targets(soak, at_most)
    for module, figures in startup.items():
        found.append(at_most(f"start-up to ready, {module}", 1.0, figures.get("ready_s"), " s"))
    found += _otel_against_xray(summary, at_most)
    return found


# Each OpenTelemetry row and the X-Ray SDK row it is held to (same sampling).
OTEL_ROWS = {
    "backend-otel-default": "backend-default",
    "backend-otel-sampled": "backend-sampled",
    "pair-otel-default": "pair-default",
    "pair-otel-sampled": "pair-sampled",
}


def _otel_against_xray(
    summary: dict[str, Any], at_most: Callable[[str, float, float | None, str], Target]
) -> list[Target]:
    """OpenTelemetry at least as fast as the X-Ray SDK, and no more memory, row by row."""
    found = []
    for otel, xray in OTEL_ROWS.items():
        if otel not in summary or xray not in summary:
            continue
        for role in summary[otel]["cpu_us"]:
            cpu = float(summary[otel]["cpu_us"][role]) / float(summary[xray]["cpu_us"][role])
            found.append(
                at_most(
                    f"OpenTelemetry / X-Ray CPU per request, {otel} {role}", 1, round(cpu, 3), "x"
                )
            )
            rss = float(summary[otel]["rss_mb"][role]) - float(summary[xray]["rss_mb"][role])
            found.append(
                at_most(f"OpenTelemetry - X-Ray RSS, {otel} {role}", 0, round(rss, 1), " MB")
            )
    return found


def _soak_targets(
    soak: dict[str, Any] | None,
    at_most: Callable[[str, float, float | None, str], Target],
) -> list[Target]:
    """Memory after the long run (the largest service) and its growth over the second half."""
    after = growth = None
    if soak:
        end, middle = soak["end"]["rss_mb"], soak["middle"]["rss_mb"]
        after = max(end.values())
        growth = round(max(end[role] - middle[role] for role in end), 1)
    where = f"{soak['config']}, {soak['end']['requests']} requests" if soak else "long run"
    return [
        at_most(f"RSS per service after the long run ({where})", 90, after, " MB"),
        at_most(
            f"RSS growth per service over the long run's second half ({where})",
            SOAK_GROWTH_LIMIT_MB,
            growth,
            " MB",
        ),
    ]


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _defaults_cost(summary: dict[str, Any]) -> list[str]:
    """What the defaults add per pair request, in µs: the figure behind pair-default / pair-off.

    The ratio also moves when the rest of the pair gets cheaper or dearer;
    the absolute cost does not, so it is the figure to compare when the
    defaults change. Nothing when the run left either pair row out.
    """
    front = _added_cpu(summary, "pair-default", "pair-off", "front")
    back = _added_cpu(summary, "pair-default", "pair-off", "back")
    if front is None or back is None:
        return []
    return [
        "",
        f"The defaults (INFO access lines, default sampling) add {round(front + back, 1)} µs "
        f"of CPU per pair request (pair-default against pair-off): frontend {front}, "
        f"backend {back}.",
    ]


def markdown(results: dict[str, Any], header: dict[str, str]) -> str:
    """The report as Markdown: the run, the table, the targets, start-up and stop."""
    summary = summarize(results)
    descriptions = {c["name"]: c["description"] for c in results["configs"]}
    lines = [f"- {key}: {value}" for key, value in header.items()]
    lines += [
        "",
        "| configuration | requests/s | p50 ms | p99 ms | CPU µs/request | RSS MB | ratio "
        "| errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, figures in summary.items():
        cpu = ", ".join(f"{role} {value}" for role, value in figures["cpu_us"].items())
        rss = ", ".join(f"{role} {value}" for role, value in figures["rss_mb"].items())
        ratio = f"{figures['ratio']} x {figures['baseline']}" if figures["ratio"] else ""
        lines.append(
            f"| {name}: {descriptions[name]} | {figures['rps']} | {figures['p50_ms']} "
            f"| {figures['p99_ms']} | {cpu} | {rss} | {ratio} | {figures['errors']} |"
        )
    lines += _defaults_cost(summary)
    lines += ["", "| target | limit | measured | verdict |", "|---|---|---|---|"]
    found = targets(
        summary, results["startup"], results.get("metrics_record_us"), results.get("soak")
    )
    for target in found:
        lines.append(
            f"| {target.name} | {target.limit} | {_cell(target.value)} | {target.verdict} |"
        )
    lines += [
        "",
        "| service | start-up to ready (median) | SIGTERM to exit (median, no drain delay) |",
    ]
    lines += ["|---|---|---|"]
    for module, figures in results["startup"].items():
        lines.append(f"| {module} | {figures['ready_s']} s | {figures['sigterm_to_exit_s']} s |")
    soak = results.get("soak")
    if soak:
        lines += [
            "",
            f"Long run, {soak['config']} at {soak['connections']} connections:",
            "",
            "| after | requests | connections opened by wrk | RSS MB |",
            "|---|---|---|---|",
        ]
        for point in ("middle", "end"):
            figures = soak[point]
            rss = ", ".join(f"{role} {mb}" for role, mb in figures["rss_mb"].items())
            opened = _cell(figures.get("connections_opened"))
            lines.append(f"| {point} | {figures['requests']} | {opened} | {rss} |")
    tracing = results.get("tracing_cpu_us")
    if tracing:
        xray, otel = tracing["xray-sdk"], tracing["otel"]
        lines += [
            "",
            "Tracing CPU per sampled request (server span and one call out, in process): "
            f"X-Ray SDK {xray} µs, OpenTelemetry {otel} µs "
            f"(OpenTelemetry / X-Ray {round(otel / xray, 2)}).",
        ]
        on_path = results.get("tracing_request_path_us")
        if on_path:
            lines[-1] += (
                f" On the request path: X-Ray SDK {on_path['xray-sdk']} µs, "
                f"OpenTelemetry {on_path['otel']} µs (the rest is OpenTelemetry's export thread)."
            )
    encoding = results.get("otlp_encoding_us")
    if encoding:
        counts = " / ".join(next(iter(encoding.values())))
        per_encoder = "; ".join(
            f"{name} " + " / ".join(str(us) for us in figures.values()) + " µs"
            for name, figures in encoding.items()
        )
        lines += [
            "",
            f"OTLP protobuf encoding per finished span (in process), {counts} attributes: "
            f"{per_encoder}.",
        ]
    return "\n".join(lines) + "\n"
