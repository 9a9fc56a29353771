"""``/api``: the backend's JSON API, served through the frontend.

What an API client (a mobile app, a script, the load tests' API user) reaches
through the public load balancer: the backend itself stays in the private
network. Request bodies are passed on as the client sent them and validated
by the backend alone (decoding and encoding them again here could only add
failures of its own); answers are relayed as the backend sent them (status
and body, which the client checks is a JSON object); errors are the backend's
own, and when the backend cannot answer, the error is JSON with status 502,
503 or 504. Relaying the bytes spares FastAPI validating and serializing the
parsed body again (about 10 µs of CPU per request measured on a small answer).
The request bodies are documented in the OpenAPI schema by the models below.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from frontend.backend_client import BackendAnswer, BackendClient, favorite_query
from servicekit.errors import error_responses

MAX_ID = 2_147_483_647

# Any call may find the backend unreachable (503), slow (504) or failing (502).
router = APIRouter(prefix="/api", tags=["api"], responses=error_responses(502, 503, 504))
IdPath = Annotated[int, Path(gt=0, le=MAX_ID)]
_NO_NUL = r"^[^\x00]*$"
_VISIBLE_NO_NUL = r"^[^\x00]*[^\s\x00][^\x00]*$"


class ItemCreate(BaseModel):
    """The body of ``POST /api/items`` (the backend validates it): no NUL anywhere,
    and a title that is not only whitespace."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=100, pattern=_VISIBLE_NO_NUL)
    name: str = Field(default="", max_length=50, pattern=_NO_NUL)
    content: str = Field(default="", max_length=1000, pattern=_NO_NUL)


class NotificationCreate(BaseModel):
    """The body of ``POST /api/notifications``: no NUL anywhere, and a title and
    category that are not only whitespace."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=100, pattern=_VISIBLE_NO_NUL)
    description: str = Field(default="", max_length=1000, pattern=_NO_NUL)
    category: str = Field(
        default="information", min_length=1, max_length=30, pattern=_VISIBLE_NO_NUL
    )


class FavoriteUpdate(BaseModel):
    """The body of ``PUT /api/items/{id}/favorite``."""

    model_config = ConfigDict(extra="forbid")

    favorite: bool


def _documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` describing a JSON body the route reads as raw bytes."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        },
    }


def _backend(request: Request) -> BackendClient:
    client: BackendClient = request.app.state.backend
    return client


async def _json_body(request: Request) -> bytes:
    """The request body, as sent, when it is declared JSON (else 415).

    Requiring ``application/json`` also keeps browsers' cross-site "simple"
    requests (forms, ``text/plain``) out: a page elsewhere cannot send one
    without a CORS preflight, which this service does not grant.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(415, "the body must be application/json")
    return await request.body()


def _relayed(answer: BackendAnswer) -> Response:
    return Response(answer.raw, status_code=answer.status, media_type="application/json")


@router.get("/helloworld")
async def helloworld(request: Request) -> Response:
    return _relayed(await _backend(request).exchange("GET", "/v1/helloworld"))


# The backend's paging bounds, checked here too so the schema says what is valid.
Limit = Annotated[int | None, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int | None, Query(ge=0, le=MAX_ID, description="how many to skip")]


def _paging(limit: int | None, offset: int | None) -> dict[str, str]:
    return {k: str(v) for k, v in (("limit", limit), ("offset", offset)) if v is not None}


@router.get("/items")
async def items(
    request: Request,
    favorite: bool | None = None,
    limit: Limit = None,
    offset: Offset = None,
) -> Response:
    query = {**favorite_query(favorite), **_paging(limit, offset)}
    return _relayed(await _backend(request).exchange("GET", "/v1/items", params=query))


@router.post(
    "/items",
    status_code=201,
    openapi_extra=_documented_body(ItemCreate),
    responses=error_responses(415, 422),
)
async def create_item(request: Request) -> Response:
    body = await _json_body(request)
    return _relayed(await _backend(request).exchange("POST", "/v1/items", content=body))


@router.put(
    "/items/{item_id}/favorite",
    openapi_extra=_documented_body(FavoriteUpdate),
    responses=error_responses(404, 415, 422),
)
async def set_favorite(request: Request, item_id: IdPath) -> Response:
    path = f"/v1/items/{item_id}/favorite"
    body = await _json_body(request)
    return _relayed(await _backend(request).exchange("PUT", path, content=body))


@router.get("/notifications")
async def notifications(request: Request, limit: Limit = None, offset: Offset = None) -> Response:
    query = _paging(limit, offset)
    return _relayed(await _backend(request).exchange("GET", "/v1/notifications", params=query))


@router.post(
    "/notifications",
    status_code=201,
    openapi_extra=_documented_body(NotificationCreate),
    responses=error_responses(415, 422),
)
async def create_notification(request: Request) -> Response:
    body = await _json_body(request)
    return _relayed(await _backend(request).exchange("POST", "/v1/notifications", content=body))


@router.get("/notifications/count")
async def unread_count(request: Request) -> Response:
    return _relayed(await _backend(request).exchange("GET", "/v1/notifications/count"))


@router.put("/notifications/read")
async def mark_all_read(request: Request) -> Response:
    return _relayed(await _backend(request).exchange("PUT", "/v1/notifications/read"))


@router.put("/notifications/{notification_id}/read", responses=error_responses(404))
async def mark_read(request: Request, notification_id: IdPath) -> Response:
    path = f"/v1/notifications/{notification_id}/read"
    return _relayed(await _backend(request).exchange("PUT", path))
