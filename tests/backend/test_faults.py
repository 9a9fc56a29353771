"""Fault injection: each fault does what it says, and nothing exists unless enabled."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.settings import BackendSettings
from tests.backend.conftest import MakeClient
from tests.support import base_env, free_port, sqlite_url

LOOPBACK = "127.0.0.1"


def test_no_admin_route_and_no_faults_unless_enabled(make_client: MakeClient) -> None:
    client = make_client()
    assert client.get("/admin/faults").status_code == 404
    assert client.put("/admin/faults", json={"error_rate": 1}).status_code == 404
    assert all(client.get("/v1/helloworld").status_code == 200 for _ in range(20))
    assert "fault_injection" not in client.get("/readyz").json()["checks"]


@pytest.mark.parametrize(
    "variable",
    [{"fault_latency_ms": 10}, {"fault_error_rate": 0.5}, {"fault_readiness_fail": True}],
)
def test_fault_settings_are_refused_unless_enabled(variable: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="FAULT_INJECTION_ENABLED"):
        BackendSettings(**variable)  # type: ignore[arg-type]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_fault_injection_is_refused_outside_development_and_test(environment: str) -> None:
    with pytest.raises(ValidationError, match="FAULT_INJECTION_ENABLED is refused outside"):
        BackendSettings(
            fault_injection_enabled=True, environment=environment, allowed_hosts="backend.internal"
        )  # type: ignore[arg-type]


@pytest.mark.parametrize("client_host", ["10.0.1.23", "192.168.1.5", "testclient"])
def test_admin_routes_refuse_clients_beyond_loopback(
    make_client: MakeClient, client_host: str
) -> None:
    client = make_client(client_host=client_host, fault_injection_enabled=True)
    forged = {"X-Forwarded-For": "127.0.0.1"}
    response = client.put("/admin/faults", json={"error_rate": 1.0}, headers=forged)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert client.get("/admin/faults", headers=forged).status_code == 403
    assert client.get("/v1/helloworld").status_code == 200


def test_error_rate_one_fails_every_api_request_but_not_health(make_client: MakeClient) -> None:
    client = make_client(client_host=LOOPBACK, fault_injection_enabled=True, fault_error_rate=1.0)
    response = client.get("/v1/helloworld")
    assert response.status_code == 500
    assert response.json()["error"] == "injected_fault"
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_error_rate_fails_about_that_share(make_client: MakeClient) -> None:
    client = make_client(client_host=LOOPBACK, fault_injection_enabled=True, fault_error_rate=0.5)
    statuses = [client.get("/v1/helloworld").status_code for _ in range(200)]
    assert set(statuses) == {200, 500}
    assert 60 <= statuses.count(500) <= 140


@pytest.mark.serial  # a time bound
def test_latency_delays_api_requests(make_client: MakeClient) -> None:
    client = make_client(client_host=LOOPBACK, fault_injection_enabled=True, fault_latency_ms=300)
    start = time.perf_counter()
    assert client.get("/v1/helloworld").status_code == 200
    assert time.perf_counter() - start >= 0.3
    start = time.perf_counter()
    client.get("/healthz")
    assert time.perf_counter() - start < 0.3


def test_readiness_fault_fails_readyz_only(make_client: MakeClient) -> None:
    client = make_client(
        client_host=LOOPBACK, fault_injection_enabled=True, fault_readiness_fail=True
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "readiness_fail" in response.json()["checks"]["fault_injection"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/helloworld").status_code == 200


def test_admin_endpoint_changes_faults_at_run_time(make_client: MakeClient) -> None:
    client = make_client(client_host=LOOPBACK, fault_injection_enabled=True)
    assert client.get("/admin/faults").json() == {
        "latency_ms": 0,
        "error_rate": 0.0,
        "readiness_fail": False,
    }
    assert client.get("/v1/helloworld").status_code == 200
    response = client.put("/admin/faults", json={"error_rate": 1.0, "readiness_fail": True})
    assert response.json() == {"latency_ms": 0, "error_rate": 1.0, "readiness_fail": True}
    assert client.get("/v1/helloworld").status_code == 500
    assert client.get("/readyz").status_code == 503
    client.put("/admin/faults", json={"error_rate": 0, "readiness_fail": False})
    assert client.get("/v1/helloworld").status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"error_rate": 2}, {"latency_ms": -1}, {"readiness_fail": "yes"}, {"unknown": 1}],
)
def test_admin_endpoint_rejects_bad_input(make_client: MakeClient, body: dict[str, object]) -> None:
    client = make_client(client_host=LOOPBACK, fault_injection_enabled=True)
    assert client.put("/admin/faults", json=body).status_code == 422
    assert client.get("/admin/faults").json()["error_rate"] == 0.0


@pytest.mark.slow
def test_backend_with_fault_injection_in_production_exits_2_naming_the_variable(
    tmp_path: Path,
) -> None:
    env = base_env(
        PORT=str(free_port()),
        ENVIRONMENT="production",
        ALLOWED_HOSTS="backend.internal",
        FAULT_INJECTION_ENABLED="true",
        DATABASE_URL=sqlite_url(tmp_path / "f.sqlite3"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "backend"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (line,) = [json.loads(raw) for raw in result.stdout.splitlines()]
    assert line["event"] == "invalid configuration"
    assert line["errors"][0]["variable"] == "FAULT_INJECTION_ENABLED"
