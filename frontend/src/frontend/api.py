"""``/api``: the backend's JSON API, served through the frontend.

What an API client (a mobile app, a script, the load tests' API user) reaches
through the public load balancer: the backend itself stays in the private
network. Bodies and errors are the backend's own; when the backend cannot
answer, the error is JSON with status 502, 503 or 504.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, status

from frontend.backend_client import BackendClient

MAX_ID = 2_147_483_647

router = APIRouter(prefix="/api", tags=["api"])
IdPath = Annotated[int, Path(gt=0, le=MAX_ID)]


def _backend(request: Request) -> BackendClient:
    client: BackendClient = request.app.state.backend
    return client


@router.get("/helloworld")
async def helloworld(request: Request) -> dict[str, Any]:
    return {"data": await _backend(request).hello()}


@router.get("/items")
async def items(request: Request, favorite: bool | None = None) -> dict[str, Any]:
    return {"data": await _backend(request).items(favorite)}


@router.post("/items", status_code=status.HTTP_201_CREATED)
async def create_item(request: Request, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    return await _backend(request).create_item_raw(body)


@router.put("/items/{item_id}/favorite")
async def set_favorite(
    request: Request, item_id: IdPath, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    return await _backend(request).set_favorite_raw(item_id, body)


@router.get("/notifications")
async def notifications(request: Request) -> dict[str, Any]:
    return {"data": await _backend(request).notifications()}


@router.get("/notifications/count")
async def unread_count(request: Request) -> dict[str, int]:
    return {"unread": await _backend(request).unread_count()}


@router.put("/notifications/read")
async def mark_all_read(request: Request) -> dict[str, int]:
    return {"updated": await _backend(request).mark_all_read()}


@router.put("/notifications/{notification_id}/read")
async def mark_read(request: Request, notification_id: IdPath) -> dict[str, Any]:
    return await _backend(request).mark_read(notification_id)
