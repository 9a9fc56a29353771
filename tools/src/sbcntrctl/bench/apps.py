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
* ``otlp-sink``: an OTLP/HTTP endpoint that accepts every export (the
  collector's place in the OpenTelemetry configurations; not measured).

Run one with ``PORT=... python -m sbcntrctl.bench.apps NAME``: uvicorn with the
same loop and HTTP parser as the services, no access log.
"""

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

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


async def otlp_sink_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the request and answer an empty ``ExportTraceServiceResponse`` (zero bytes)."""
    if scope["type"] != "http":
        await raw_app(scope, receive, send)
        return
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/x-protobuf")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    name, port = sys.argv[1], int(os.environ["PORT"])
    if name == "raw":
        app: Any = raw_app
    elif name in ("fastapi", "fastapi-routers"):
        app = fastapi_app(routers=name.endswith("-routers"))
    elif name == "otlp-sink":
        app = otlp_sink_app
    elif name in ("pair-front", "pair-front-routers"):
        app = pair_front_app(os.environ["BACKEND_URL"], routers=name.endswith("-routers"))
    else:
        sys.exit(f"unknown app {name!r}")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
