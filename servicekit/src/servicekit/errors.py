"""The error contract of both services: one JSON body for every error.

Every error a service answers, whatever raised it, has the body
``{"error": <code>, "message": <text>, "request_id": <id>, ...}`` (a
validation error adds ``fields``), except where a service renders HTML for a
browser (:data:`HtmlErrors`; the frontend's pages).

* :func:`validation_error` and :func:`http_error` answer what FastAPI raises
  (422 bad input, 404, 405 with the full ``Allow``, 413...). A body that is not
  JSON, or not UTF-8, is a 422 like any other bad input.
* :func:`client_disconnected` answers a request whose client went away (or
  was cut off by the edge's body timeout) before its body was read: a 499
  (nginx's "client closed request"), so that it is logged at ``warning`` and
  counted with the 4xx, never as a server error. Nobody reads that answer.
* :func:`answer_internal_error` answers an unhandled exception (for the
  service middleware, :mod:`servicekit.middleware`) with a JSON 500 that
  says ``Connection: close`` (the server closes the connection after an
  unhandled error; saying so lets a client's pool drop it rather than meet a
  reset on its next request); the exception then goes on to the access log
  and the trace, so that the failure is one ``error`` line with its traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from servicekit.logs import get_logger, request_id_var

log = get_logger("servicekit.errors")

HtmlErrors = Callable[[Request, int, str], Response | None]
"""A service's HTML error page: ``(request, status, message)`` -> a page, or
``None`` where the request wants JSON."""

_ERROR_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    499: "client_closed_request",
    500: "internal_error",
}
# What FastAPI raises when a request body cannot be read as JSON text (invalid
# UTF-8, for one); it is bad input like any other, so a 422.
_BODY_PARSE_ERROR = "There was an error parsing the body"


class ErrorBody(BaseModel):
    """The JSON body of every error (for the OpenAPI schema)."""

    error: str
    message: str
    request_id: str | None


class FieldError(BaseModel):
    field: str
    location: str
    message: str
    type: str


class ValidationErrorBody(ErrorBody):
    """A 422: the error body, and what is wrong with each field."""

    fields: list[FieldError]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting these error statuses with the error body."""
    return {
        status: {
            "model": ValidationErrorBody if status == 422 else ErrorBody,
            "description": _ERROR_CODES.get(status, "error").replace("_", " "),
        }
        for status in statuses
    }


def document_error_bodies(app: FastAPI) -> None:
    """Make the OpenAPI schema's automatic 422s show the validation error body sent.

    FastAPI documents every 422 with its own ``HTTPValidationError`` (a
    ``detail`` list); this service answers :class:`ValidationErrorBody`.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            if "HTTPValidationError" in components:
                body = ValidationErrorBody.model_json_schema(
                    ref_template="#/components/schemas/{model}"
                )
                components.update(body.pop("$defs", {}))
                components.pop("ValidationError", None)
                components["HTTPValidationError"] = body
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_body(error: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON error body: ``{"error", "message", "request_id", ...}``."""
    return {"error": error, "message": message, "request_id": request_id_var.get(), **extra}


def _html(request: Request, status: int, message: str) -> Response | None:
    render: HtmlErrors | None = getattr(request.app.state, "html_errors", None)
    return render(request, status, message) if render is not None else None


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {
            "field": _field_name(err),
            "location": str(err["loc"][0]),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors()
    ]
    names = ", ".join(sorted({field["field"] for field in fields}))
    message = f"invalid request: {names}"
    page = _html(request, 422, message)
    if page is not None:
        return page
    return JSONResponse(error_body("validation_error", message, fields=fields), status_code=422)


ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def unchained(handler: ExceptionHandler) -> ExceptionHandler:
    """``handler``, after which the exception forgets the one it was raised from.

    FastAPI raises a body it could not read or parse as a new exception
    ``from`` the one it caught, while a local of its frame holds the new one:
    the caught exception's traceback holds that frame, so the two would make
    a reference cycle, freed only when the garbage collector runs (rarely in
    the services: :func:`servicekit.runner.tune_garbage_collector`).
    """

    @functools.wraps(handler)
    async def answer(request: Request, exc: Exception) -> Response:
        try:
            return await handler(request, exc)
        finally:
            exc.__cause__ = exc.__context__ = None

    return answer


def _field_name(err: Any) -> str:
    if err["type"] == "json_invalid":
        return "body"  # its location is a character position, not a field
    return ".".join(str(part) for part in err["loc"][1:]) or str(err["loc"][0])


CLIENT_CLOSED_REQUEST = 499
"""The status recorded for a request whose client left before it was read."""


async def client_disconnected(request: Request, exc: Exception) -> Response:
    """The 499 of a request whose body could not be read: the client went away."""
    return JSONResponse(
        error_body(
            _ERROR_CODES[CLIENT_CLOSED_REQUEST], "the client closed the connection mid-request"
        ),
        status_code=CLIENT_CLOSED_REQUEST,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status, detail = exc.status_code, str(exc.detail)
    headers = dict(exc.headers or {})
    if status == 400 and isinstance(exc.__cause__, ClientDisconnect):
        # FastAPI reports a body it could not read as a parse error.
        return await client_disconnected(request, exc.__cause__)
    if status == 400 and detail == _BODY_PARSE_ERROR:
        return await validation_error(
            request,
            RequestValidationError(
                [{"loc": ("body",), "msg": "body is not valid JSON text", "type": "json_invalid"}]
            ),
        )
    if status == 405:
        allowed = allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=headers)
    page = _html(request, status, detail)
    if page is not None:
        for name, value in headers.items():
            page.headers[name] = value
        return page
    return JSONResponse(
        error_body(_ERROR_CODES.get(status, "http_error"), detail),
        status_code=status,
        headers=headers or None,
    )


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path (``OPTIONS`` included)."""
    routes = request.app.router.routes
    allowed = ["OPTIONS"]
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return sorted(allowed)


async def answer_internal_error(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer an unhandled exception: the 500 page or JSON body, with ``Connection: close``.

    The service middleware (:mod:`servicekit.middleware`) calls it when the
    application raised before starting its response, then lets the exception
    go on to the access line and the trace; the server closes the connection,
    as the response says.
    """
    message = "internal error"
    response: Response | None = None
    try:
        response = _html(Request(scope, receive), 500, message)
    except Exception:
        # The JSON body below is the fallback; the page's own failure is
        # a line of its own (the request's failure is in the access line).
        log.exception("error page failed", status=500)
    if response is None:
        response = Response(
            orjson.dumps(error_body("internal_error", message)),
            status_code=500,
            media_type="application/json",
        )
    response.headers["Connection"] = "close"
    await response(scope, receive, send)
