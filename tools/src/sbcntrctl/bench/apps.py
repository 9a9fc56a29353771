"""Baseline applications the benchmark compares the services with.

* ``raw``: a bare ASGI callable answering a fixed JSON body;
* ``fastapi``: a bare FastAPI app with one JSON endpoint;
* ``pair-front``: a bare FastAPI app that answers by calling ``BACKEND_URL``
  with one shared aiohttp session (the fastest client measured here);
* ``fastapi-routers``, ``pair-front-routers``: the same with the endpoint on an
  ``APIRouter`` included with ``app.include_router``. Since FastAPI 0.137 an
  included router stays a node the app's router resolves on every request:
  this row measures that node, which the services avoid
  (:func:`servicekit.routes.include_routes` declares their routers' routes on
  the app itself);
* ``sidecars``: what stands in for a task's tracing sidecars, not measured:
  an OTLP/HTTP endpoint on ``PORT`` that accepts every export (the ADOT
  collector's place in the OpenTelemetry configurations) and a UDP port,
  ``XRAY_DAEMON_PORT``, that reads every datagram sent to it and drops it
  (the X-Ray daemon's place in the X-Ray SDK configurations).
  ``GET /received`` answers how many of each it has taken, and how many
  datagrams the kernel dropped for want of room in its buffer.

Run one with ``PORT=... python -m sbcntrctl.bench.apps NAME``: uvicorn with the
same loop and HTTP parser as the services, no access log.
"""

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from sbcntrctl.xraycapture import daemon_socket

BODY = b'{"data":"Hello world"}'


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def fastapi_app(*, routers: bool = False) -> Any:
    """One JSON endpoint at ``/v1/helloworld``: on the app, or on an included ``APIRouter``."""
    from fastapi import APIRouter, FastAPI  # noqa: PLC0415 - only the app being run is imported

    app = FastAPI()
    api = APIRouter(prefix="/v1") if routers else app.router

    @api.get("/v1/helloworld" if not routers else "/helloworld")
    async def hello() -> dict[str, str]:
        return {"data": "Hello world"}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    if routers:
        app.include_router(api)
    return app


def pair_front_app(backend_url: str, *, routers: bool = False) -> Any:
    """``/api/helloworld`` answered by a call to ``backend_url``: on the app, or on a router."""
    import aiohttp  # noqa: PLC0415
    from fastapi import APIRouter, FastAPI, Request  # noqa: PLC0415

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(backend_url, connector=connector) as session:
            app.state.session = session
            yield

    app = FastAPI(lifespan=lifespan)
    api = APIRouter(prefix="/api") if routers else app.router

    @api.get("/api/helloworld" if not routers else "/helloworld")
    async def hello(request: Request) -> dict[str, Any]:
        async with request.app.state.session.get("/v1/helloworld") as response:
            body: dict[str, Any] = await response.json()
            return {"data": body["data"]}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    if routers:
        app.include_router(api)
    return app


class _Datagrams(asyncio.DatagramProtocol):
    """Counts and drops each datagram, as a daemon that has read it."""

    def __init__(self, received: dict[str, int]) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received["xray_datagrams"] += 1


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped for the UDP socket on ``port`` (its full buffer)."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            return int(fields[-1])
    return 0


def sidecars_app(daemon: socket.socket) -> Any:
    """The ASGI app of ``sidecars``: OTLP exports answered, X-Ray datagrams read.

    ``daemon`` is bound before the app runs; its datagrams are read from the
    lifespan's start-up, so the process answers ``/readyz`` only once it
    reads them. ``POST /v1/traces`` is answered with an empty
    ``ExportTraceServiceResponse`` (zero bytes) after its body is read;
    ``GET /received`` with the counts of exports and datagrams taken and of
    datagrams the kernel dropped; anything else with 404.
    """
    received = {"otlp_exports": 0, "xray_datagrams": 0}
    port = daemon.getsockname()[1]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Datagrams(received), sock=daemon
            )
            try:
                await raw_app(scope, receive, send)
            finally:
                transport.close()
            return
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        status, content_type, body = 200, b"application/json", b""
        route = (scope["method"], scope["path"])
        if route == ("POST", "/v1/traces"):
            received["otlp_exports"] += 1
            content_type = b"application/x-protobuf"
        elif route == ("GET", "/received"):
            body = json.dumps({**received, "xray_drops": udp_drops(port)}).encode()
        elif route == ("GET", "/readyz"):
            body = BODY
        else:
            status = 404
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type)],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    name, port = sys.argv[1], int(os.environ["PORT"])
    if name == "raw":
        app: Any = raw_app
    elif name in ("fastapi", "fastapi-routers"):
        app = fastapi_app(routers=name.endswith("-routers"))
    elif name == "sidecars":
        # Bound here, so a port already taken ends the process before it is ready.
        app = sidecars_app(daemon_socket(int(os.environ["XRAY_DAEMON_PORT"])))
    elif name in ("pair-front", "pair-front-routers"):
        app = pair_front_app(os.environ["BACKEND_URL"], routers=name.endswith("-routers"))
    else:
        sys.exit(f"unknown app {name!r}")
    # A lifespan that fails ends the process (uvicorn's "auto" would serve on).
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
    )


if __name__ == "__main__":
    main()
