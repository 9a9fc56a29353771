"""``include_routes``: a router's routes declared again on the app answer as the included router's.

Each case builds two apps from one router, one with ``app.include_router``
and one with :func:`servicekit.routes.include_routes`, and holds the second
to the first: the same documentation, the same answers to the same requests.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Form, Header, HTTPException, Query, status
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from servicekit.routes import ROUTE_OPTIONS, declares_only_routes, include_routes
from tests.support import router_nodes


class Item(BaseModel):
    name: str
    price: float
    note: str | None = None


class Public(BaseModel):
    name: str
    note: str | None = None


def caller(x_caller: Annotated[str | None, Header()] = None) -> str:
    if x_caller is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "who is calling?")
    return x_caller


Caller = Annotated[str, Depends(caller)]


def rich_router() -> APIRouter:
    """A router using every route option the services use, and more."""
    router = APIRouter(
        prefix="/v1",
        tags=["items"],
        dependencies=[Depends(caller)],
        responses={502: {"description": "upstream failed"}},
    )

    @router.get("/items/{item_id}", response_model=Public, name="item")
    async def read(item_id: int, verbose: Annotated[bool, Query()] = False) -> dict[str, Any]:
        """Read one item."""
        return {"name": f"item {item_id}", "price": 1.5, "note": "v" if verbose else None}

    @router.post(
        "/items",
        status_code=status.HTTP_201_CREATED,
        response_model_exclude_none=True,
        summary="Create an item",
        openapi_extra={"x-audit": True},
    )
    async def create(item: Item, who: Caller) -> Item:
        return item.model_copy(update={"note": None if item.note is None else who})

    @router.get("/page", response_class=HTMLResponse, deprecated=True)
    def page() -> str:  # a plain function: run in the thread pool
        return "<p>page</p>"

    @router.get("/hidden", include_in_schema=False, response_class=PlainTextResponse)
    async def hidden(request: Request) -> str:
        return str(request.url_for("item", item_id=7))

    @router.put("/both")
    async def both(request: Request) -> dict[str, str]:
        return {"method": request.method}

    @router.get("/lines")
    async def lines() -> AsyncIterator[Public]:  # JSON lines, each item as Public
        yield {"name": "a", "price": 1}  # type: ignore[misc]
        yield {"name": "b", "price": 2, "note": "n"}  # type: ignore[misc]

    @router.get("/events", response_class=EventSourceResponse)
    async def events() -> AsyncIterator[Public]:  # server-sent events, each item as Public
        yield {"name": "a", "price": 1}  # type: ignore[misc]

    return router


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/items/3", {"headers": {"x-caller": "a"}}),
    ("GET", "/v1/items/3?verbose=true", {"headers": {"x-caller": "a"}}),
    ("GET", "/v1/items/three", {"headers": {"x-caller": "a"}}),  # 422
    ("GET", "/v1/items/3", {}),  # the router's dependency: 403
    ("POST", "/v1/items", {"headers": {"x-caller": "b"}, "json": {"name": "n", "price": 2}}),
    (
        "POST",
        "/v1/items",
        {"headers": {"x-caller": "b"}, "json": {"name": "n", "price": 2, "note": "x"}},
    ),
    ("POST", "/v1/items", {"headers": {"x-caller": "b"}, "json": {"name": "n"}}),  # 422
    ("DELETE", "/v1/items/3", {"headers": {"x-caller": "a"}}),  # 405
    ("GET", "/v1/page", {"headers": {"x-caller": "a"}}),
    ("GET", "/v1/hidden", {"headers": {"x-caller": "a"}}),
    ("PUT", "/v1/both", {"headers": {"x-caller": "a"}}),
    ("POST", "/v1/both", {"headers": {"x-caller": "a"}}),  # 405
    ("GET", "/v1/items/3/", {"headers": {"x-caller": "a"}}),  # redirected to the route
    ("GET", "/v1/lines", {"headers": {"x-caller": "a"}}),
    ("GET", "/v1/events", {"headers": {"x-caller": "a"}}),
    ("GET", "/v2/items/3", {"headers": {"x-caller": "a"}}),  # 404
]


def answers(app: FastAPI) -> list[tuple[int, dict[str, str], bytes]]:
    with TestClient(app, follow_redirects=False) as client:
        return [
            (
                (answer := client.request(method, url, **options)).status_code,
                dict(answer.headers),
                answer.content,
            )
            for method, url, options in REQUESTS
        ]


def both_ways(router: APIRouter) -> tuple[FastAPI, FastAPI]:
    included, declared = FastAPI(), FastAPI()
    included.include_router(router)
    include_routes(declared, router)
    return included, declared


def test_each_option_of_add_api_route_is_read_back_from_the_route() -> None:
    # https://fastapi.tiangolo.com/reference/apirouter/ : APIRouter.add_api_route.
    # A route option FastAPI adds to APIRoute and not to add_api_route (or the
    # reverse) would be lost by the copy: this fails first.
    route_params = set(inspect.signature(APIRoute.__init__).parameters)
    assert set(ROUTE_OPTIONS) == route_params - {
        "self",
        "path",
        "endpoint",
        "dependency_overrides_provider",  # the app's, given by add_api_route
    }
    route = rich_router().routes[0]
    for name in ROUTE_OPTIONS:
        assert hasattr(route, name), name


def test_the_routes_answer_as_the_included_router_s_and_are_documented_the_same() -> None:
    included, declared = both_ways(rich_router())
    assert router_nodes(declared) == []
    assert len(router_nodes(included)) == 1  # FastAPI's node, walked by each request
    assert declared.openapi() == included.openapi()
    got, want = answers(declared), answers(included)
    assert [status_code for status_code, _, _ in want] == [
        200, 200, 422, 403, 201, 201, 422, 405, 200, 200, 200, 405, 307, 200, 200, 404,
    ]  # fmt: skip
    assert got == want
    # The streamed items are the declared model's: the price is left out.
    assert want[13][2] == b'{"name":"a","note":null}\n{"name":"b","note":"n"}\n'
    assert want[14][2] == b'data: {"name":"a","note":null}\n\n'


def test_the_app_s_dependency_overrides_apply_to_the_declared_routes() -> None:
    included, declared = both_ways(rich_router())
    for app in (included, declared):
        app.dependency_overrides[caller] = lambda: "override"
        with TestClient(app) as client:
            created = client.post("/v1/items", json={"name": "n", "price": 2, "note": "x"})
            assert created.json()["note"] == "override"


def test_the_routes_come_after_the_app_s_own_and_the_router_is_left_as_it_was() -> None:
    router = rich_router()
    before = list(router.routes)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/v1/items/{item_id}")
    async def first(item_id: int) -> dict[str, str]:
        return {"answered": "by the app"}

    include_routes(app, router)
    assert router.routes == before
    assert [getattr(route, "path", None) for route in app.router.routes] == [
        "/v1/items/{item_id}",
        "/v1/items/{item_id}",
        "/v1/items",
        "/v1/page",
        "/v1/hidden",
        "/v1/both",
        "/v1/lines",
        "/v1/events",
    ]
    with TestClient(app) as client:
        assert client.get("/v1/items/1").json() == {"answered": "by the app"}


def nested() -> APIRouter:
    router, inner = APIRouter(), APIRouter()

    @inner.get("/inner")
    async def read() -> dict[str, str]:
        return {"from": "inner"}

    router.include_router(inner, prefix="/v1")
    return router


def plain_route() -> APIRouter:
    router = APIRouter()

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("plain")

    router.add_route("/plain", plain)
    return router


async def handler() -> None:
    pass


def with_start_up() -> APIRouter:
    return APIRouter(on_startup=[handler])


def with_shutdown() -> APIRouter:
    return APIRouter(on_shutdown=[handler])


def with_form_limits() -> APIRouter:
    router = APIRouter(form_limits={"max_fields": 1})  # applied per request by the inclusion

    @router.post("/form")
    async def form(a: Annotated[str, Form()], b: Annotated[str, Form()] = "") -> dict[str, str]:
        return {"a": a, "b": b}

    return router


def with_lifespan() -> APIRouter:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield

    return APIRouter(lifespan=lifespan)


def with_frontend(tmp_path: Path) -> APIRouter:
    (tmp_path / "index.html").write_text("<p>app</p>")
    router = APIRouter()
    router.frontend("/app", directory=tmp_path)
    return router


@pytest.mark.parametrize(
    "build",
    [
        nested,
        plain_route,
        with_start_up,
        with_shutdown,
        with_lifespan,
        with_form_limits,
        with_frontend,
    ],
)
def test_a_router_needing_its_inclusion_is_included(build: Any, tmp_path: Path) -> None:
    router = build(tmp_path) if build is with_frontend else build()
    assert not declares_only_routes(router)
    app = FastAPI()
    include_routes(app, router)
    assert [type(node).__name__ for node in router_nodes(app)] == ["_IncludedRouter"]
    with TestClient(app) as client:
        if build is nested:
            assert client.get("/v1/inner").json() == {"from": "inner"}
        if build is plain_route:
            assert client.get("/plain").text == "plain"
        if build is with_frontend:
            assert client.get("/app/").text == "<p>app</p>"
        if build is with_form_limits:
            assert client.post("/form", data={"a": "1", "b": "2"}).status_code == 400


def test_a_router_of_path_operations_is_declared_again() -> None:
    assert declares_only_routes(rich_router())
    assert declares_only_routes(APIRouter())


class Stamped(APIRoute):
    """A route class of an older signature (no ``form_limits``) that stamps its answers."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        if "form_limits" in options:
            raise TypeError("unexpected keyword argument 'form_limits'")
        super().__init__(path, endpoint, **options)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def stamped(request: Request) -> Response:
            response = await handler(request)
            response.headers["x-stamped"] = "yes"
            return response

        return stamped


def test_a_route_class_is_kept() -> None:
    router = APIRouter(route_class=Stamped)

    @router.get("/stamped")
    async def stamped() -> dict[str, str]:
        return {"answered": "yes"}

    included, declared = both_ways(router)
    assert router_nodes(declared) == []
    assert answers(declared)[-1] == answers(included)[-1]  # a 404: the route is elsewhere
    for app in (included, declared):
        with TestClient(app) as client:
            assert client.get("/stamped").headers["x-stamped"] == "yes"
