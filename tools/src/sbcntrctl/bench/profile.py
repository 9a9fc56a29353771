"""Where a service's CPU goes, by layer, from a cProfile of a run under load.

Profile a service while wrk drives it, then group the profile's own time
(each function's time without its callees) by the layer the function belongs
to::

    PORT=28781 DATABASE_URL=... python -m cProfile -o backend.prof -m backend &
    wrk -t1 -c32 -d20s http://127.0.0.1:28781/v1/helloworld
    kill -TERM %1; wait       # the service drains and exits: the profile is written
    python -m sbcntrctl.bench.profile backend.prof REQUESTS

It prints a Markdown table: each layer's share of the profiled time and its
µs per request (the profile's time over ``REQUESTS``, the count wrk printed;
start-up and shutdown are in the profile too, a few per cent of a 20 s run).
cProfile adds its own cost to every Python call, so the µs are inflated (about
2-3x here) and the shares are what to read: native work (system calls,
parsing in C) is under-weighted against Python code.
"""

from __future__ import annotations

import pstats
import sys
from collections import defaultdict

# The functions that write to a socket: their own time is mostly the system
# call, which on loopback also runs the receiving side's TCP work.
SOCKET_WRITES = "socket writes (uvicorn's send, aiohttp's _write: mostly the system call)"
_SOCKET_WRITERS = (
    ("/uvicorn/protocols/http/httptools_impl.py", "send"),
    ("/aiohttp/http_writer.py", "_write"),
)
# (layer, path fragments of its functions), first match wins.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("edge limits (servicekit.edge)", ("servicekit/edge.py",)),
    (
        "servicekit middleware (access line, security, errors)",
        (
            "servicekit/middleware.py",
            "servicekit/accesslog.py",
            "servicekit/browser.py",
            "servicekit/errors.py",
        ),
    ),
    ("logging (servicekit.logs, structlog)", ("servicekit/logs.py", "/structlog/")),
    (
        "tracing (servicekit.tracing*, X-Ray SDK, OpenTelemetry)",
        (
            "servicekit/tracing",
            "servicekit/trace_header.py",
            "servicekit/otlp_wire.py",
            "servicekit/sampling",
            "/aws_xray_sdk/",
            "/opentelemetry/",
        ),
    ),
    ("metrics (servicekit.metrics)", ("servicekit/metrics.py",)),
    ("servicekit, other", ("servicekit/",)),
    ("service code (frontend, backend)", ("/frontend/", "/backend/")),
    ("uvicorn HTTP protocol", ("/uvicorn/", "/httptools/")),
    ("FastAPI, Starlette, pydantic", ("/fastapi/", "/starlette/", "/pydantic", "/anyio/")),
    ("aiohttp client", ("/aiohttp/", "/yarl/", "/multidict/")),
    ("httpx (request and response objects)", ("/httpx/", "/httpx_aiohttp/", "/httpcore/")),
    ("SQLAlchemy, database driver", ("/sqlalchemy/", "/aiosqlite/", "/asyncpg/")),
    ("asyncio, uvloop", ("/asyncio/", "/uvloop/")),
)
NATIVE = "built-in functions (C: dict, isinstance, parsing, encoding)"
STANDARD_LIBRARY = "Python's standard library"
OTHER = "other Python"


def layer_of(filename: str, function: str = "") -> str:
    """The layer of ``function`` defined in ``filename`` (``~`` for built-ins)."""
    if filename == "~":
        return NATIVE
    if any(filename.endswith(path) and function == name for path, name in _SOCKET_WRITERS):
        return SOCKET_WRITES
    for layer, fragments in LAYERS:
        if any(fragment in filename for fragment in fragments):
            return layer
    if "site-packages" not in filename and ("/lib/python3" in filename or "<frozen" in filename):
        return STANDARD_LIBRARY
    return OTHER


def by_layer(stats: pstats.Stats) -> dict[str, float]:
    """Own time in seconds per layer.

    A lifespan (start-up, then suspended at its ``yield`` while the service
    serves) is left out: cProfile charges a suspended coroutine with time it
    did not spend.
    """
    totals: dict[str, float] = defaultdict(float)
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "lifespan" not in name:
            totals[layer_of(filename, name)] += own
    return dict(totals)


def table(totals: dict[str, float], requests: int) -> str:
    whole = sum(totals.values()) or 1.0
    lines = ["| layer | share | µs per request (profiled) |", "|---|---|---|"]
    for layer, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        lines.append(f"| {layer} | {seconds / whole:.1%} | {seconds / requests * 1e6:.1f} |")
    lines.append(f"| total | 100% | {whole / requests * 1e6:.1f} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) != 3 or not sys.argv[2].isdigit() or int(sys.argv[2]) < 1:
        sys.exit("usage: python -m sbcntrctl.bench.profile PROFILE REQUESTS")
    try:
        stats = pstats.Stats(sys.argv[1])
    except (OSError, TypeError, ValueError) as exc:
        sys.exit(f"{sys.argv[1]}: not a cProfile file ({exc})")
    print(table(by_layer(stats), int(sys.argv[2])))


if __name__ == "__main__":
    main()
