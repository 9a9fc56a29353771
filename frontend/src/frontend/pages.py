"""The HTML pages: home, items and notifications.

Every page reads what it shows from the backend; when the backend fails, the
exception handlers in :mod:`frontend.app` render the error page with the
status :class:`~frontend.backend_client.BackendUnavailable` carries.
Form posts answer with a 303 redirect (post/redirect/get); a refused form is
shown again with its values and a message beside each wrong field, and a write
the backend did not confirm says the change may or may not have been saved.

Every page ends with a footer telling which frontend and backend tasks served
it, its request id and its trace id (see :func:`served`).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from frontend.backend_client import (
    BackendClient,
    BackendRejected,
    BackendUnavailable,
    backend_tasks,
    track_backend_tasks,
)
from servicekit.forms import read_form
from servicekit.identity import TaskIdentity
from servicekit.logs import request_id_var, trace_id_var

T = TypeVar("T")
MAX_ID = 2_147_483_647
PAGE_SIZE = 20
MAX_PAGE = 100_000

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


async def _backend(request: Request) -> BackendClient:
    # An async dependency runs in the request's own context, so what
    # track_backend_tasks sets is seen by the page and its error handlers.
    track_backend_tasks()
    client: BackendClient = request.app.state.backend
    return client


BackendDep = Annotated[BackendClient, Depends(_backend)]
IdPath = Annotated[int, PathParam(gt=0, le=MAX_ID)]
PageQuery = Annotated[int, Query(ge=1, le=MAX_PAGE)]
FilterForm = Annotated[Literal["", "true", "false"], Form()]
PageForm = Annotated[int, Form(ge=1, le=MAX_PAGE)]


class Served(NamedTuple):
    """What the page footer shows: who served this request and how to find its trace."""

    request_id: str | None
    trace_id: str | None
    trace_url: str | None  # the trace in the X-Ray console, when running on ECS
    frontend: TaskIdentity
    backends: list[TaskIdentity]


def served(request: Request) -> Served:
    """The footer of the current request (read when the page is rendered)."""
    identity: TaskIdentity = request.app.state.identity
    region: str | None = request.app.state.settings.aws_region
    trace_id = trace_id_var.get()
    trace_url = None
    if trace_id and region and identity.on_ecs:
        trace_url = (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home"
            f"?region={region}#xray:traces/{trace_id}"
        )
    return Served(request_id_var.get(), trace_id, trace_url, identity, backend_tasks())


def _when(value: str) -> dict[str, str]:
    """A backend timestamp as ``<time>`` wants it: ISO 8601 in UTC, and a readable UTC text."""
    try:
        moment = datetime.fromisoformat(value).astimezone(UTC)
    except (TypeError, ValueError):
        return {"iso": "", "text": str(value)}
    return {
        "iso": moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "text": moment.strftime("%d %b %Y, %H:%M UTC"),
    }


templates.env.filters["when"] = _when


async def _both(first: Awaitable[T], second: Awaitable[Any]) -> tuple[T, Any]:
    """Run two backend calls concurrently; raise the first failure after both end."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]  # type: ignore[return-value]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a page template with ``context`` and the footer."""
    context.setdefault("served", served(request))
    return templates.TemplateResponse(request, template, context, status_code=status_code)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, backend: BackendDep) -> HTMLResponse:
    message, unread = await _both(backend.hello(), backend.unread_count())
    return render(request, "home.html", message=message, unread=unread, section="home")


def items_url(favorite: bool | None, page: int = 1, **extra: str) -> str:
    """The items page with a filter and a page number (defaults left out)."""
    query: dict[str, str] = {}
    if favorite is not None:
        query["favorite"] = str(favorite).lower()
    if page > 1:
        query["page"] = str(page)
    query.update(extra)
    return "/items" + (f"?{urlencode(query)}" if query else "")


class Paging(NamedTuple):
    """Where a page of a list sits: numbers for "21-40 of 783" and the page links."""

    page: int
    pages: int
    total: int
    first: int  # 1-based position of the first entry shown (0 when none)
    last: int

    @classmethod
    def of(cls, body: dict[str, Any], page: int) -> Paging:
        total = int(body["total"])
        shown = len(body["data"])
        first = (page - 1) * PAGE_SIZE + 1 if shown else 0
        return cls(page, max(1, math.ceil(total / PAGE_SIZE)), total, first, first + shown - 1)


async def _items_page(
    request: Request,
    backend: BackendClient,
    favorite: bool | None,
    page: int,
    *,
    status_code: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    added: int | None = None,
) -> Response:
    body, unread = await _both(
        backend.items(favorite, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE),
        backend.unread_count(),
    )
    paging = Paging.of(body, page)
    if page > paging.pages:
        return past_the_end(items_url(favorite, paging.pages))
    items = body["data"]
    return render(
        request,
        "items.html",
        status_code=status_code,
        section="items",
        items=items,
        paging=paging,
        favorite=favorite,
        filter_value="" if favorite is None else str(favorite).lower(),
        page_url=lambda number: items_url(favorite, number),
        unread=unread,
        form=form or {},
        errors=errors or {},
        added=next((item for item in items if item["id"] == added), None) if added else None,
        added_id=added,
    )


@router.get("/items", response_class=HTMLResponse)
async def items_page(
    request: Request,
    backend: BackendDep,
    favorite: bool | None = None,
    page: PageQuery = 1,
    added: Annotated[int | None, Query(gt=0, le=MAX_ID)] = None,
) -> Response:
    return await _items_page(request, backend, favorite, page, added=added)


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
    """Create an item; bad input shows the form again, a failed write says so, keeping it."""
    submitted = await read_form(request)
    title, name, content = (_text(submitted.get(field)) for field in ("title", "name", "content"))
    form = {"title": title, "name": name, "content": content}
    try:
        item = await backend.create_item(title, name, content)
    except BackendRejected as exc:
        return await _items_page(
            request, backend, None, 1, status_code=exc.status, form=form, errors=field_errors(exc)
        )
    except BackendUnavailable as exc:
        return write_failed(request, exc, back_url="/items", form=form)
    return RedirectResponse(
        items_url(None, added=str(item["id"])) + f"#item-{item['id']}", status_code=303
    )


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
    filter: FilterForm = "",
    page: PageForm = 1,
) -> RedirectResponse:
    """Mark or unmark; back to the same filter and page the button was on."""
    await backend.set_favorite(item_id, favorite == "true")
    shown = None if filter == "" else filter == "true"
    return RedirectResponse(f"{items_url(shown, page)}#item-{item_id}", status_code=303)


@router.get("/notifications", response_class=HTMLResponse)
async def notifications_page(
    request: Request, backend: BackendDep, unread: bool | None = None, page: PageQuery = 1
) -> Response:
    """All notifications, or ``?unread=true|false``; a bad value is a 422, as on /items."""
    body, count = await _both(
        backend.notifications(unread, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE),
        backend.unread_count(),
    )
    paging = Paging.of(body, page)
    if page > paging.pages:
        return past_the_end(notifications_url(paging.pages, unread))
    return render(
        request,
        "notifications.html",
        section="notifications",
        notifications=body["data"],
        paging=paging,
        filter_value="" if unread is None else str(unread).lower(),
        page_url=lambda number: notifications_url(number, unread),
        unread=count,
    )


def notifications_url(page: int, unread: bool | None = None) -> str:
    """The notifications page ``page`` with a filter (defaults left out)."""
    query = {} if unread is None else {"unread": str(unread).lower()}
    if page > 1:
        query["page"] = str(page)
    return "/notifications" + (f"?{urlencode(query)}" if query else "")


def past_the_end(last_page_url: str) -> RedirectResponse:
    """A page number past the list's end (it shrank, or was typed): go to its last page."""
    return RedirectResponse(last_page_url, status_code=303)


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
async def read_one(
    notification_id: IdPath, backend: BackendDep, filter: FilterForm = "", page: PageForm = 1
) -> RedirectResponse:
    """Mark one read; back to the same filter and page the button was on."""
    await backend.mark_read(notification_id)
    shown = None if filter == "" else filter == "true"
    return RedirectResponse(
        f"{notifications_url(page, shown)}#notification-{notification_id}", status_code=303
    )


def _text(value: object) -> str:
    """A submitted form field as text ("" when absent or a file)."""
    return value if isinstance(value, str) else ""


def write_failed(
    request: Request,
    exc: BackendUnavailable,
    *,
    back_url: str,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    """The answer to a write the backend did not confirm: it may or may not have happened."""
    return render(
        request,
        "error.html",
        status_code=exc.status,
        status=exc.status,
        title="Your change could not be confirmed",
        message=(
            "The backend did not answer properly, so your change may or may not have been "
            "saved. Check the list before you try again, or the change may be made twice."
        ),
        back_url=back_url,
        form=form,
        unread=None,
    )


# Plain-language messages for the backend's validation errors, by error type.
_TOO_LONG = re.compile(r"at most (\d+) character")


def field_errors(exc: BackendRejected) -> dict[str, str]:
    """One message per refused form field, in plain language; ``""`` for the whole form."""
    fields = exc.body.get("fields")
    if not isinstance(fields, list) or not fields:
        return {"": str(exc.body.get("message", "The backend refused the request."))}
    errors: dict[str, str] = {}
    for field in fields:
        name = str(field.get("field", ""))
        kind = str(field.get("type", ""))
        if kind in ("missing", "string_too_short"):
            message = f"Enter a {name}." if name else "Fill in the form."
        elif kind == "string_too_long":
            limit = _TOO_LONG.search(str(field.get("message", "")))
            message = f"Use at most {limit.group(1)} characters." if limit else "This is too long."
        elif kind == "string_pattern_mismatch":
            message = "Remove the invisible control character (a NUL byte): it cannot be saved."
        else:
            message = "This value is not accepted."
        errors.setdefault(name if name in ("title", "name", "content") else "", message)
    return errors
