"""What a client may not decide: trace ids, sampling, its own address.

The X-Ray header and X-Forwarded-For are written by whoever sends the
request; a service takes from them only what a trusted hop could have
written, in a form that cannot forge a log line or a trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from servicekit.asgi import client_facts
from servicekit.logs import configure_logging
from tests.servicekit.conftest import start_sample
from tests.servicekit.test_tracing import TracedSettings, traced_app
from tests.support import NO_SAMPLING_RULES, SegmentCollector, rules_file

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
ZERO_ROOT = "1-00000000-000000000000000000000000"
TRACE_ID = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")


@pytest.fixture
def unsampling(tmp_path: Path) -> Path:
    return rules_file(tmp_path, NO_SAMPLING_RULES)


def traced_client(collector: SegmentCollector, rules: Path, **settings: Any) -> TestClient:
    return TestClient(
        traced_app(
            TracedSettings(
                xray_daemon_address=collector.address, xray_sampling_rules=rules, **settings
            )
        )
    )


@pytest.fixture(params=["xray-sdk", "otel"])
def backend(request: pytest.FixtureRequest) -> str:
    """Both tracing backends read the header the same way (servicekit.trace_header)."""
    return str(request.param)


def backend_settings(backend: str) -> dict[str, Any]:
    # Nothing is sampled in these tests, so nothing is exported.
    return {"tracing_backend": backend, "otel_exporter_otlp_endpoint": "http://127.0.0.1:9"}


@pytest.mark.parametrize(
    "header",
    [
        "Root=evil<script>alert(1)</script>;Sampled=1",
        "Root=1-5759e988-bd862e3fe1be46a99427279Z",
        "Root=1-5759e988-bd862e3fe1be46a994272793-extra",
        "Root=" + "1" * 10_000,
        "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8",
    ],
    ids=["markup", "bad-hex", "trailing", "long", "zeros"],
)
def test_a_malformed_trace_header_starts_a_new_trace_and_is_not_logged(
    unsampling: Path, header: str, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("traced", "INFO")
    with (
        SegmentCollector() as collector,
        traced_client(collector, unsampling, **backend_settings(backend)) as client,
    ):
        response = client.get("/sync", headers={"X-Amzn-Trace-Id": header})
    root = response.headers["x-amzn-trace-id"].split(";")[0].removeprefix("Root=")
    assert TRACE_ID.match(root)
    assert root != ZERO_ROOT
    output = capsys.readouterr().out
    lines = [json.loads(line) for line in output.splitlines()]
    access = [line for line in lines if line.get("logger") == "servicekit.access"]
    assert [line["trace_id"] for line in access] == [root]
    assert "evil" not in output
    assert max(len(line) for line in output.splitlines()) < 2000


def test_a_well_formed_root_is_joined(unsampling: Path, backend: str) -> None:
    with (
        SegmentCollector() as collector,
        traced_client(collector, unsampling, **backend_settings(backend)) as client,
    ):
        response = client.get(
            "/sync", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent=53995c3f42cd8ad8"}
        )
    assert response.headers["x-amzn-trace-id"] == f"Root={ROOT}"


def test_an_untrusted_sampled_1_does_not_force_tracing(unsampling: Path) -> None:
    with SegmentCollector() as collector, traced_client(collector, unsampling) as client:
        for _ in range(20):
            assert (
                client.get(
                    "/sync", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Sampled=1"}
                ).status_code
                == 200
            )
        assert collector.wait_for(1, timeout=0.5) == []


def test_a_trusted_upstream_decides_sampling(unsampling: Path) -> None:
    with (
        SegmentCollector() as collector,
        traced_client(collector, unsampling, xray_trust_incoming_sampling=True) as client,
    ):
        client.get("/sync", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Sampled=1"})
        (segment,) = collector.wait_for(1)
    assert segment["trace_id"] == ROOT


def scope(forwarded_for: list[str], peer: str = "10.0.0.9") -> dict[str, Any]:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded_for]
    return {"type": "http", "headers": headers, "client": (peer, 40000)}


@pytest.mark.parametrize(
    ("forwarded_for", "trusted", "expected"),
    [
        (["203.0.113.7"], 1, ("203.0.113.7", True)),
        (["6.6.6.6, 203.0.113.7"], 1, ("203.0.113.7", True)),  # the client wrote 6.6.6.6
        (["6.6.6.6", "203.0.113.7"], 1, ("203.0.113.7", True)),  # two headers, one list
        (["6.6.6.6, 203.0.113.7, 198.51.100.2"], 2, ("203.0.113.7", True)),
        (["203.0.113.7"], 2, ("203.0.113.7", True)),  # fewer hops than proxies
        (["6.6.6.6, 203.0.113.7"], 0, ("10.0.0.9", False)),  # no proxy: the peer
        (["6.6.6.6, <script>"], 1, ("10.0.0.9", False)),  # not an address
        (["6.6.6.6, 2001:db8::1"], 1, ("2001:db8::1", True)),
        ([], 1, ("10.0.0.9", False)),
    ],
)
def test_client_ip_is_the_right_most_untrusted_hop(
    forwarded_for: list[str], trusted: int, expected: tuple[str, bool]
) -> None:
    facts = client_facts(scope(forwarded_for), trusted)
    assert (facts.client_ip, facts.forwarded) == expected


@pytest.fixture
def access_client() -> Iterator[TestClient]:
    settings = TracedSettings(tracing_enabled=False, trusted_proxies=1)
    with TestClient(traced_app(settings)) as client:
        yield client


def test_the_access_line_uses_the_trusted_address(
    access_client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("traced", "INFO")
    access_client.get("/sync", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (access,) = [line for line in lines if line.get("logger") == "servicekit.access"]
    assert access["client_ip"] == "203.0.113.7"


@pytest.mark.parametrize(("trusted", "expected"), [("0", "127.0.0.1"), ("1", "203.0.113.7")])
def test_a_served_request_takes_its_address_by_trusted_proxies_alone(
    tmp_path: Path, trusted: str, expected: str
) -> None:
    """A real server: only ``TRUSTED_PROXIES`` decides what ``X-Forwarded-For`` is worth.

    uvicorn's own proxy-header handling, on by default, trusts a peer on
    127.0.0.1 and writes the header's address over the peer's before the
    application sees the request: with ``TRUSTED_PROXIES=0`` a client on the
    task's loopback (a sidecar) could then name any address. The runner turns
    it off.
    """
    service = start_sample(tmp_path, TRUSTED_PROXIES=trusted)
    try:
        answer = httpx.get(
            f"{service.url}/ok",
            headers={"X-Forwarded-For": "203.0.113.7", "X-Request-Id": "trusted-proxies"},
            timeout=10,
        )
        assert answer.status_code == 200
        (access,) = service.access_lines_for("trusted-proxies", 1)
    finally:
        service.stop()
    assert access["client_ip"] == expected
