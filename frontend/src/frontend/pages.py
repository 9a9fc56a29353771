"""The HTML pages: home, items and notifications.

Every page reads what it shows from the backend; when the backend fails, the
exception handlers in :mod:`frontend.app` render the error page with the
status :class:`~frontend.backend_client.BackendUnavailable` carries.
Form posts answer with a 303 redirect (post/redirect/get).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from frontend.backend_client import BackendClient, BackendRejected

T = TypeVar("T")
MAX_ID = 2_147_483_647

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
# How the OpenAPI schema shows an HTML answer; a page's bad input is the error page.
_HTML = {"text/html": {"schema": {"type": "string"}}}
router = APIRouter(
    responses={
        422: {"description": "The error page", "content": _HTML},
        502: {"description": "The error page: the backend failed", "content": _HTML},
        503: {"description": "The error page: the backend is unavailable", "content": _HTML},
        504: {"description": "The error page: the backend did not answer", "content": _HTML},
    }
)
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "The error page: no such item", "content": _HTML}
}


def _backend(request: Request) -> BackendClient:
    client: BackendClient = request.app.state.backend
    return client


BackendDep = Annotated[BackendClient, Depends(_backend)]
IdPath = Annotated[int, PathParam(gt=0, le=MAX_ID)]


async def _both(first: Awaitable[T], second: Awaitable[Any]) -> tuple[T, Any]:
    """Run two backend calls concurrently; raise the first failure after both end."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]  # type: ignore[return-value]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a page template with ``context``."""
    return templates.TemplateResponse(request, template, context, status_code=status_code)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, backend: BackendDep) -> HTMLResponse:
    message, unread = await _both(backend.hello(), backend.unread_count())
    return render(request, "home.html", message=message, unread=unread)


@router.get("/items", response_class=HTMLResponse)
async def items_page(
    request: Request, backend: BackendDep, favorite: bool | None = None
) -> HTMLResponse:
    items, unread = await _both(backend.items(favorite), backend.unread_count())
    return render(request, "items.html", items=items, unread=unread, form={}, form_error=None)


class ItemForm(BaseModel):
    """What the add form accepts, for the OpenAPI schema: the backend's rules.

    The route reads the form itself rather than through FastAPI, so that
    input outside these rules is shown again in the form with the backend's
    message instead of an error page.
    """

    title: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")
    name: str = Field(default="", max_length=50, pattern=r"^[^\x00]*$")
    content: str = Field(default="", max_length=1000, pattern=r"^[^\x00]*$")


@router.post(
    "/items",
    response_class=RedirectResponse,
    status_code=303,
    responses={422: {"description": "The form again, with the error", "content": _HTML}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": ItemForm.model_json_schema()}
            },
        }
    },
)
async def add_item(request: Request, backend: BackendDep) -> Response:
    """Create an item; on bad input show the form again with the backend's message."""
    submitted = await request.form()
    title, name, content = (_text(submitted.get(field)) for field in ("title", "name", "content"))
    try:
        item = await backend.create_item(title, name, content)
    except BackendRejected as exc:
        items, unread = await _both(backend.items(), backend.unread_count())
        form = {"title": title, "name": name, "content": content}
        return render(
            request,
            "items.html",
            status_code=exc.status,
            items=items,
            unread=unread,
            form=form,
            form_error=_describe(exc),
        )
    return RedirectResponse(f"/items#item-{item['id']}", status_code=303)


@router.post(
    "/items/{item_id}/favorite",
    response_class=RedirectResponse,
    status_code=303,
    responses=_NOT_FOUND,
)
async def favorite_item(
    item_id: IdPath,
    backend: BackendDep,
    favorite: Annotated[Literal["true", "false"], Form()],
) -> RedirectResponse:
    await backend.set_favorite(item_id, favorite == "true")
    return RedirectResponse(f"/items#item-{item_id}", status_code=303)


@router.get("/notifications", response_class=HTMLResponse)
async def notifications_page(request: Request, backend: BackendDep) -> HTMLResponse:
    notifications, unread = await _both(backend.notifications(), backend.unread_count())
    return render(request, "notifications.html", notifications=notifications, unread=unread)


@router.post("/notifications/read", response_class=RedirectResponse, status_code=303)
async def read_all(backend: BackendDep) -> RedirectResponse:
    await backend.mark_all_read()
    return RedirectResponse("/notifications", status_code=303)


@router.post(
    "/notifications/{notification_id}/read",
    response_class=RedirectResponse,
    status_code=303,
    responses=_NOT_FOUND,
)
async def read_one(notification_id: IdPath, backend: BackendDep) -> RedirectResponse:
    await backend.mark_read(notification_id)
    return RedirectResponse(f"/notifications#notification-{notification_id}", status_code=303)


def _text(value: object) -> str:
    """A submitted form field as text ("" when absent or a file)."""
    return value if isinstance(value, str) else ""


def _describe(exc: BackendRejected) -> str:
    fields = exc.body.get("fields")
    if isinstance(fields, list) and fields:
        return "; ".join(f"{f.get('field')}: {f.get('message')}" for f in fields)
    return str(exc.body.get("message", "The backend refused the request."))
