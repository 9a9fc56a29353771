"""A small service built with servicekit, run as a real process by the servicekit tests.

Its routes exercise what the log contract covers: a plain request, a warning
from the ``warnings`` module and from a stdlib logger, an unhandled exception,
and a log line that carries a secret setting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import Field, SecretStr

from servicekit.app import create_service_app
from servicekit.identity import TaskIdentity
from servicekit.logs import get_logger
from servicekit.runner import serve
from servicekit.settings import ServiceSettings

log = get_logger("sample")


class SampleSettings(ServiceSettings):
    service_name: str = "sample"
    port: int = Field(default=0, ge=0, le=65535)
    api_key: SecretStr = SecretStr("sample-secret-value")


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    if os.environ.get("SAMPLE_FAIL_AT_START"):
        msg = "sample start-up failure"
        raise RuntimeError(msg)
    yield


def create_app(settings: SampleSettings, identity: TaskIdentity | None = None) -> FastAPI:
    app = create_service_app(settings, title="sample", lifespan=lifespan, identity=identity)

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        log.info("handled ok", detail="fine")
        return {"status": "ok"}

    @app.get("/warn")
    async def warn() -> dict[str, str]:
        warnings.warn("sample deprecation", DeprecationWarning, stacklevel=1)
        logging.getLogger("some.library").warning("library warning with %s", "args")
        return {"status": "warned"}

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        msg = "sample failure"
        raise RuntimeError(msg)

    @app.get("/secret")
    async def secret() -> dict[str, str]:
        log.info("settings", settings=settings, api_key=settings.api_key)
        return {"status": "logged"}

    @app.get("/sleep")
    async def sleep(seconds: float = 1.0) -> dict[str, float]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @app.post("/echo")
    async def echo(body: dict[str, object]) -> dict[str, int]:
        return {"keys": len(body)}

    @app.get("/missing-status")
    async def teapot() -> dict[str, str]:
        from fastapi import HTTPException  # noqa: PLC0415

        raise HTTPException(418, "short and stout")

    return app


if __name__ == "__main__":
    warnings.simplefilter("default", DeprecationWarning)
    raise SystemExit(serve(SampleSettings, create_app))
