"""Fault injection for drills: added latency, a share of 500s, failing readiness.

Exists only when ``FAULT_INJECTION_ENABLED=true``, which the settings refuse
outside ``ENVIRONMENT=development`` or ``test``: otherwise neither the
middleware nor the ``/admin/faults`` routes are installed, and the settings
refuse any ``FAULT_*`` value. ``/admin/faults`` answers only clients on the
loopback interface (a shell in the container or on the developer's machine;
ECS Exec in a task), never another host, whatever headers it sends. Faults
apply to the API (``/v1``), never to the health routes, and are per process:
each task of a service is set on its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.types import ASGIApp, Receive, Scope, Send

from servicekit.errors import error_body
from servicekit.logs import get_logger

API_PREFIX = "/v1/"

log = get_logger("backend.faults")


@dataclass
class Faults:
    """The faults in force in this process."""

    latency_ms: int = 0
    error_rate: float = 0.0
    readiness_fail: bool = False


class FaultsUpdate(BaseModel):
    """A partial update of the faults; omitted fields keep their value."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int | None = Field(default=None, ge=0, le=60_000)
    error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    readiness_fail: StrictBool | None = None


class FaultsOut(BaseModel):
    latency_ms: int
    error_rate: float
    readiness_fail: bool


class FaultInjectionMiddleware:
    """Delays API requests and fails a share of them with 500, as :class:`Faults` says."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        if self.faults.error_rate and random.random() < self.faults.error_rate:  # noqa: S311
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            body = orjson.dumps(error_body("injected_fault", "fault injection: error"))
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def faults_router(faults: Faults) -> APIRouter:
    """``GET``/``PUT /admin/faults``: read and change the faults of this process."""
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(_from_loopback)])

    @router.get("/faults")
    async def read_faults() -> FaultsOut:
        return FaultsOut(**vars(faults))

    @router.put("/faults")
    async def update_faults(update: FaultsUpdate, request: Request) -> FaultsOut:
        for name, value in update.model_dump(exclude_none=True).items():
            setattr(faults, name, value)
        log.warning(
            "faults changed",
            client_ip=request.client.host if request.client else "",
            **vars(faults),
        )
        return FaultsOut(**vars(faults))

    return router


def _from_loopback(request: Request) -> None:
    """Refuse (403) a client that is not on this host's loopback interface."""
    peer = request.client.host if request.client else ""
    try:
        local = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        local = False
    if not local:
        raise HTTPException(403, "the admin routes answer loopback clients only")


async def readiness_fault(faults: Faults) -> None:
    """The readiness check of the ``readiness_fail`` fault."""
    if faults.readiness_fail:
        msg = "fault injection: readiness_fail"
        raise RuntimeError(msg)
