"""A service's HTML error page that fails to render: the JSON 500 answers, and a line says why."""

from __future__ import annotations

import json

import pytest
from fastapi import Request
from fastapi.responses import Response
from fastapi.testclient import TestClient

from servicekit.app import create_service_app
from servicekit.logs import configure_logging
from tests.servicekit.sample_service import SampleSettings


def broken_page(request: Request, status: int, message: str) -> Response | None:
    msg = "template missing"
    raise LookupError(msg)


def test_a_failing_error_page_falls_back_to_json_and_is_logged(
    capfd: pytest.CaptureFixture[str],
) -> None:
    configure_logging("sample", "INFO")
    app = create_service_app(
        SampleSettings(metrics_enabled=False), title="sample", html_errors=broken_page
    )

    @app.get("/boom")
    async def boom() -> None:
        msg = "sample failure"
        raise RuntimeError(msg)

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"accept": "text/html"})
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line[:1] == "{"]
    page = [line for line in lines if line["event"] == "error page failed"]
    assert len(page) == 1
    assert page[0]["level"] == "error"
    assert "template missing" in page[0]["exception"]
