"""``/docs``: Swagger UI for the service's OpenAPI schema, with no CDN.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN, so it is blank
offline or in a private subnet, and runs an inline script. This one serves
the assets the ``swagger-ui-bundle-v2`` package ships, under ``/docs/assets``,
and starts Swagger UI from a script file: it works without internet access and
under a Content-Security-Policy without inline scripts. Installed only where
``API_DOCS_ENABLED`` (by default: development and test).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
_INIT_SCRIPT = Path(__file__).with_name("swagger-init.js")
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API</title>
<link rel="stylesheet" href="{docs}/assets/swagger-ui.css">
<link rel="icon" href="{docs}/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{docs}/assets/swagger-ui-bundle.js"></script>
<script src="{docs}/init.js"></script>
</body>
</html>
"""


def add_api_docs(app: FastAPI, title: str) -> None:
    """Serve Swagger UI at ``/docs`` for ``app.openapi_url``, from local assets."""
    page = _PAGE.format(title=title, docs=DOCS_PATH, openapi=app.openapi_url)
    app.mount(
        f"{DOCS_PATH}/assets",
        StaticFiles(directory=str(swagger_ui_path)),
        name="docs-assets",
    )

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get(f"{DOCS_PATH}/init.js", include_in_schema=False)
    async def docs_init() -> FileResponse:
        return FileResponse(_INIT_SCRIPT, media_type="text/javascript")
