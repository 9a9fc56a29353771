"""Baseline applications the benchmark compares the services with.

* ``raw``: a bare ASGI callable answering a fixed JSON body;
* ``fastapi``: a bare FastAPI app with one JSON endpoint;
* ``pair-front``: a bare FastAPI app that answers by calling ``BACKEND_URL``
  with one shared aiohttp session (the fastest client measured here);
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


def fastapi_app() -> Any:
    from fastapi import FastAPI  # noqa: PLC0415 - only the app being run is imported

    app = FastAPI()

    @app.get("/v1/helloworld")
    async def hello() -> dict[str, str]:
        return {"data": "Hello world"}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    return app


def pair_front_app(backend_url: str) -> Any:
    import aiohttp  # noqa: PLC0415
    from fastapi import FastAPI, Request  # noqa: PLC0415

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(backend_url, connector=connector) as session:
            app.state.session = session
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/api/helloworld")
    async def hello(request: Request) -> dict[str, Any]:
        async with request.app.state.session.get("/v1/helloworld") as response:
            body: dict[str, Any] = await response.json()
            return {"data": body["data"]}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

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
    elif name == "fastapi":
        app = fastapi_app()
    elif name == "otlp-sink":
        app = otlp_sink_app
    elif name == "pair-front":
        app = pair_front_app(os.environ["BACKEND_URL"])
    else:
        sys.exit(f"unknown app {name!r}")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
