"""``/docs`` and ``/openapi.json``: off outside development unless asked, and self-contained."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from pydantic import Field

from servicekit.app import create_service_app
from servicekit.settings import ServiceSettings


class DocsSettings(ServiceSettings):
    service_name: str = "docs"
    port: int = Field(default=0)
    tracing_enabled: bool = False


def client(**settings: object) -> TestClient:
    settings.setdefault("allowed_hosts", "testserver")
    return TestClient(create_service_app(DocsSettings(**settings), title="docs"))  # type: ignore[arg-type]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_docs_are_off_outside_development_by_default(environment: str) -> None:
    with client(environment=environment) as docs:
        assert docs.get("/docs").status_code == 404
        assert docs.get("/openapi.json").status_code == 404
        assert docs.get("/docs/assets/swagger-ui-bundle.js").status_code == 404


def test_a_setting_turns_them_on_or_off() -> None:
    with client(environment="production", api_docs_enabled=True) as docs:
        assert docs.get("/openapi.json").status_code == 200
    with client(environment="development", api_docs_enabled=False) as docs:
        assert docs.get("/docs").status_code == 404


def test_the_docs_page_loads_only_local_assets_without_inline_script() -> None:
    with client(environment="development") as docs:
        page = docs.get("/docs")
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources
        for source in sources:
            assert source.startswith("/docs/"), source  # nothing from a CDN
            assert docs.get(source).status_code == 200, source
        assert "<script>" not in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert docs.get("/openapi.json").json()["info"]["title"] == "docs"
