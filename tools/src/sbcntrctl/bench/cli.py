"""``sbcntrctl bench``: run the benchmark and write the report (a scratch file by default)."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import sys
from pathlib import Path

from sbcntrctl.bench import environments, harness, report

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
ROOT = Path(__file__).resolve().parents[4]
# Where a run goes unless --output names the published report (docs/performance.md).
SCRATCH = ROOT / "reports" / "bench" / "performance.md"


def _count(text: str) -> int:
    """A whole number of requests, 0 or more (argparse prints the error on one line)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"not a count of requests: {text!r} (a whole number, 0 or more)"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the backend alone, logging and tracing off against every request sampled, "
        "one round (< 30 s)",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per wrk run (default 4; quick 2)")
    parser.add_argument("--connections", type=int, default=32, help="open connections per wrk run")
    parser.add_argument(
        "--only",
        help="comma-separated configurations to run (for development; targets whose "
        "configurations were left out are not measured)",
    )
    parser.add_argument(
        "--soak-requests",
        type=_count,
        help=f"requests of the long run on {harness.SOAK_CONFIG} whose RSS is sampled at the "
        f"middle and the end; 0 skips it (default {harness.SOAK_REQUESTS}; "
        "0 with --quick or --only)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=SCRATCH,
        help="Markdown file whose bench section is replaced, JSON beside it; the default is "
        "a git-ignored scratch file: give docs/performance.md to publish the run "
        f"(default: {SCRATCH.relative_to(ROOT)})",
    )


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {system}, Python {platform.python_version()}"


def write(output: Path, section: str, results: dict[str, object]) -> None:
    """Replace the bench section of ``output`` (or create it) and write the JSON beside it."""
    block = f"{BEGIN}\n{section}{END}"
    if output.exists() and BEGIN in output.read_text():
        text = output.read_text()
        start, end = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + block + text[end:]
    else:
        text = f"# Performance\n\n{block}\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    output.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")


BENCH_PACKAGES = ("servicekit", "backend", "frontend")


def missing_packages() -> list[str]:
    """The packages the bench runs that this environment lacks (the ``bench`` extra)."""
    return [name for name in BENCH_PACKAGES if importlib.util.find_spec(name) is None]


def _soak_requests(args: argparse.Namespace) -> int:
    if args.soak_requests is not None:
        return int(args.soak_requests)
    return 0 if args.quick or args.only else harness.SOAK_REQUESTS


def run(args: argparse.Namespace) -> int:
    missing = missing_packages()
    if missing:
        print(
            f"sbcntrctl bench: the services are not installed here ({', '.join(missing)}): "
            "install the tools with their bench extra (uv sync --package sbcntr-tools "
            "--extra bench) or the whole workspace (python3 dev.py)",
            file=sys.stderr,
        )
        return 2
    quick: bool = args.quick
    options = harness.RunOptions(
        root=ROOT,
        quick=quick,
        rounds=args.rounds or (1 if quick else 3),
        seconds=args.seconds or (2 if quick else 4),
        connections=args.connections,
        startup_runs=1 if quick else 5,
        only=tuple(args.only.split(",")) if args.only else (),
        soak_requests=_soak_requests(args),
        tracing_runs=1 if quick else 3,
        tracing_requests=5_000 if quick else 20_000,
    )
    try:
        results = harness.run(options)
    except environments.ServiceEnvironmentError as exc:
        print(f"sbcntrctl bench: {exc}", file=sys.stderr)
        return 2
    command = "sbcntrctl bench" + (" --quick" if quick else "")
    header = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": f"`{command}` ({options.rounds} rounds x {options.seconds:g} s, "
        f"{options.connections} connections, servers on CPU {harness.SERVER_CPU}, "
        f"wrk on CPU {harness.CLIENT_CPU}"
        + (
            f"; long run {options.soak_requests} requests on {harness.SOAK_CONFIG})"
            if options.soak_requests
            else ")"
        ),
    }
    results["header"] = header
    section = report.markdown(results, header)
    write(args.output, section, results)
    sys.stdout.write(section)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="sbcntrctl bench", description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
