"""A service's routers, served from its app's own router.

Since FastAPI 0.137, ``app.include_router(router)`` keeps ``router`` as one
node in the app's routes, and every request walks it: the node is matched,
matched again to pick the route, and writes its inclusion context into the
request's scope on the way. That cost the services about 10 µs a request
each on this project's bench machine (19 µs per frontend -> backend request
in alternating runs with and without it; the ``bare-pair-routers`` row of
docs/performance.md shows the node in bare apps). Before 0.137,
``include_router`` declared each of the router's routes again on the app.

:func:`include_routes` does what FastAPI did then, for the routers it can:
a router that holds only path operations (``@router.get`` and the like, whose
prefix, tags, dependencies, responses and limits were applied when they were
declared) and needs nothing from its inclusion (no start-up or shutdown
handler, no lifespan, no form limits of its own, which FastAPI applies per
request) has each route declared again on the app with the arguments that
declared it. The app's routes then answer as the included router's would,
``app.dependency_overrides`` included, and are documented the same
(tests/servicekit/test_routes.py holds the two side by side). Any other
router is included the usual way.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.datastructures import Default
from fastapi.routing import APIRoute

# Every argument of ``add_api_route`` but these is kept by the route it
# declared, as an attribute of the same name (the path, the endpoint and the
# route class are passed apart).
ROUTE_OPTIONS: tuple[str, ...] = tuple(
    name
    for name in inspect.signature(APIRouter.add_api_route).parameters
    if name not in {"self", "path", "endpoint", "route_class_override"}
)
_DEFAULT_LIFESPAN = type(APIRouter().lifespan_context)


def declares_only_routes(router: APIRouter) -> bool:
    """Whether ``router`` holds path operations only and needs nothing from its inclusion."""
    return (
        all(isinstance(route, APIRoute) for route in router.routes)
        # Routes declared with ``router.frontend()`` are kept apart from
        # ``routes`` and matched after every other route (FastAPI 0.165;
        # tests/servicekit/test_private_hooks.py).
        and not router._low_priority_routes
        and not router.form_limits
        and not router.on_startup
        and not router.on_shutdown
        and type(router.lifespan_context) is _DEFAULT_LIFESPAN
    )


def route_arguments(route: APIRoute) -> dict[str, Any]:
    """The ``add_api_route`` arguments that declare ``route`` again, as it was declared."""
    arguments = {name: getattr(route, name) for name in ROUTE_OPTIONS}
    if route.stream_item_type is not None:
        # A generator's item type is read from its return annotation only
        # when no response model is given; the route keeps None in its place.
        arguments["response_model"] = Default(None)
    if not arguments["form_limits"]:
        # As add_api_route itself does: a route class that predates form
        # limits is built without the argument.
        del arguments["form_limits"]
    return arguments


def include_routes(app: FastAPI, router: APIRouter) -> None:
    """Serve ``router``'s routes from ``app``: declared again on the app, or included.

    The routes come after those ``app`` already has, in ``router``'s order,
    as with ``app.include_router(router)``. They are the router's routes at
    the time of the call (a route added to the router later is not served,
    where an included router would serve it); the router itself is left as
    it was.
    """
    if not declares_only_routes(router):
        app.include_router(router)
        return
    for route in router.routes:
        assert isinstance(route, APIRoute)  # declares_only_routes checked it
        app.router.add_api_route(
            route.path, route.endpoint, route_class_override=type(route), **route_arguments(route)
        )
