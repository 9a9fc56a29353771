"""CPU of the tracing layer alone per sampled request, in one process.

The OpenTelemetry / X-Ray rows of the bench compare two whole servers, whose
CPU per request varies by several per cent from round to round on a shared
machine: more than most changes to the tracing code move it. This measures
the tracing code alone, as the services run it: servicekit's request tracer,
selected by ``TRACING_BACKEND`` (what the service middleware calls per
request), around one traced call out (:func:`servicekit.tracing.trace_call`,
as the frontend's backend client does: a server span and a client span per
request), every request sampled.

The figure is the process's CPU time (every thread: OpenTelemetry's export
thread encodes and posts the spans, the X-Ray SDK sends each segment from the
loop's thread at the end of the loop's turn) over the measured requests, up
to and including the flush of what is still queued, per request; beside it,
the part spent on the requests' own thread (flush excluded). Each request
runs in its own turn of the event loop, as under light load, so each segment
is sent alone (under load several end in one turn and go back to back, which
costs less each); the cost of an empty turn is taken off. The call out is
answered in process.

Run one backend per process (each imports only its own SDK)::

    python -m sbcntrctl.bench.tracingcpu xray-sdk|otel REQUESTS

with ``XRAY_SAMPLING_RULES`` (rules sampling every request),
``AWS_XRAY_DAEMON_ADDRESS`` and ``OTEL_EXPORTER_OTLP_ENDPOINT`` set; it
prints one JSON line: the backend and the CPU µs per request.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from starlette.types import Scope

from servicekit import tracing
from servicekit.settings import ServiceSettings

WARM_UP_REQUESTS = 500
# Room for every span of a run in the batch processor's queue: a loop this
# tight outruns the export thread, and a dropped span would cost nothing.
QUEUE_SIZE = 262_144
SCOPE: Scope = {
    "type": "http",
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/api/helloworld",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk/4.2.0")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8080),
}


def _request(tracer: tracing.RequestTracer) -> None:
    """One sampled request as the service middleware traces it, with one call out."""
    scope = dict(SCOPE)
    trace = tracer.begin(scope)
    if trace is None:
        raise RuntimeError("tracing is not configured")
    # The call out is answered in process: its cost is the tracing's alone.
    headers = {"Accept": "application/json"}
    call = tracing.trace_call("GET", "http", "127.0.0.1", 9, "/v1/helloworld", headers)
    if call is not None:
        call.answered(200)
        call.end()
    trace.responded(scope, 200)
    trace.end()


async def _turns(count: int) -> float:
    """CPU µs of one turn of the running loop that does nothing, over ``count`` turns."""
    began = time.thread_time()
    for _ in range(count):
        await asyncio.sleep(0)
    return (time.thread_time() - began) / count * 1e6


async def cpu_per_request(requests: int) -> tuple[float, float]:
    """CPU µs per sampled request of the tracing selected by the environment.

    The whole process's, then the request path's (this thread's). Each
    request runs in a turn of the loop of its own, as under light load (what
    the X-Ray SDK sends at the end of the turn goes alone); the turn's own
    cost, measured before the tracing starts, is not counted.
    """
    turn = await _turns(requests)
    settings = ServiceSettings(
        service_name="frontend", port=8080, otel_bsp_max_queue_size=QUEUE_SIZE
    )
    tracing.preload()
    tracing.configure_tracing(settings)  # inside the running loop, as the services do
    tracer = tracing.request_tracer(settings)
    for _ in range(WARM_UP_REQUESTS):
        _request(tracer)
        await asyncio.sleep(0)
    began, began_here = time.process_time(), time.thread_time()
    for _ in range(requests):
        _request(tracer)
        await asyncio.sleep(0)
    here = time.thread_time() - began_here
    tracing.shutdown_tracing()
    whole = time.process_time() - began
    return whole / requests * 1e6 - turn, here / requests * 1e6 - turn


def main() -> None:
    backend, requests = sys.argv[1], int(sys.argv[2])
    if os.environ.get("TRACING_BACKEND", backend) != backend:
        sys.exit("TRACING_BACKEND and the backend argument disagree")
    os.environ["TRACING_BACKEND"] = backend
    cpu, request_path = asyncio.run(cpu_per_request(requests))
    print(
        json.dumps(
            {"backend": backend, "cpu_us": round(cpu, 1), "request_path_us": round(request_path, 1)}
        )
    )


if __name__ == "__main__":
    main()
