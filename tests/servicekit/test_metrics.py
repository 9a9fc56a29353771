"""EMF metrics: aggregated per route, one line per route per interval, nothing per request.

Lines are validated against the EMF JSON schema (tests/servicekit/data,
from the CloudWatch User Guide) and the rules the schema leaves to the text
of the specification: every dimension referenced is a string member of the
root, every metric referenced is a number or a Values/Counts distribution of
at most 100 values (the form CloudWatch reads percentiles from, as the
OpenTelemetry collector's awsemfexporter writes it), at most 9 keys per
dimension set and 100 metrics per directive.
"""

from __future__ import annotations

import json
import math
import random
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from servicekit.metrics import BUCKET_GROWTH, ROUTABLE_METHODS, Distribution, Metrics
from tests.servicekit.test_logs import start_sample
from tests.support import Service

SCHEMA = json.loads((Path(__file__).parent / "data" / "emf-schema.json").read_text())


def spec_problems(document: dict[str, Any]) -> list[str]:
    problems = [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(document)]
    for directive in document["_aws"]["CloudWatchMetrics"]:
        if len(directive["Metrics"]) > 100:
            problems.append("more than 100 metric definitions")
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                if not isinstance(document.get(key), str):
                    problems.append(f"dimension {key} is not a string member of the root")
        for metric in directive["Metrics"]:
            value = document.get(metric["Name"])
            if isinstance(value, dict):
                values, counts = value.get("Values", []), value.get("Counts", [])
                if not 0 < len(values) == len(counts) <= 100:
                    problems.append(f"{metric['Name']}: Values/Counts of {len(values)}")
                if value.get("Count") != sum(counts):
                    problems.append(f"{metric['Name']}: Count is not the sum of Counts")
                if not all(isinstance(v, int | float) for v in [*values, *counts]):
                    problems.append(f"{metric['Name']}: non-numeric values")
            elif not isinstance(value, int | float) or isinstance(value, bool):
                problems.append(f"{metric['Name']} is not numeric")
    return problems


def percentile(values: list[float], counts: list[int], q: float) -> float:
    """The value at quantile ``q`` of a Values/Counts distribution (nearest rank)."""
    rank = math.ceil(q * sum(counts))
    seen = 0
    for value, count in sorted(zip(values, counts, strict=True)):
        seen += count
        if seen >= rank:
            return value
    return values[-1]


def exact_percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- the aggregation itself


def test_percentiles_from_the_distribution_are_within_two_percent() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(3, 1.2) for _ in range(20_000)]
    distribution = Distribution()
    for sample in samples:
        distribution.add(sample)
    parts = list(distribution.emf_values())
    values = [v for part in parts for v in part["Values"]]
    counts = [c for part in parts for c in part["Counts"]]
    assert sum(counts) == len(samples)
    assert len(parts) > 1  # a wide distribution continues on a second line
    half_width = math.sqrt(BUCKET_GROWTH) - 1
    for q in (0.5, 0.9, 0.99, 0.999):
        measured, exact = percentile(values, counts, q), exact_percentile(samples, q)
        assert abs(measured - exact) <= exact * half_width + 0.001, q


def test_documents_follow_the_specification_and_reset() -> None:
    metrics = Metrics("frontend", "sbcntr/dev")
    for n in range(300):
        metrics.record_request("GET", "/items", 200 if n % 10 else 503, 1 + n * 0.5)
    metrics.record_request("POST", "/items", 422, 4.0)
    metrics.record_call("GET /v1/items", True, 3.0)
    metrics.record_call("GET /v1/items", False, 1000.0)
    documents = metrics.documents(1_795_000_000_000)
    for document in documents:
        assert spec_problems(document) == []
    first = documents[0]
    assert first["Route"] == "GET /items"
    assert (first["Requests"], first["Status2xx"], first["Status5xx"]) == (300, 270, 30)
    assert first["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["Service", "Route"],
        ["Service"],
    ]
    continued = [d for d in documents if d.get("Route") == "GET /items"]
    assert sum(d["Latency"]["Count"] for d in continued) == 300
    assert all("Requests" not in d for d in continued[1:])  # counts are written once
    calls = next(d for d in documents if "Operation" in d)
    assert (calls["BackendCalls"], calls["BackendErrors"]) == (2, 1)
    assert metrics.documents() == []


def test_a_broken_document_fails_the_specification_check() -> None:
    metrics = Metrics("backend", "sbcntr/dev")
    metrics.record_request("GET", "/v1/items", 200, 2.0)
    [document] = metrics.documents()
    assert spec_problems({**document, "Route": 7})
    assert spec_problems({**document, "Requests": "7"})
    wide = {**document["Latency"], "Values": list(range(101)), "Counts": [1] * 101, "Count": 101}
    assert spec_problems({**document, "Latency": wide})
    assert spec_problems({k: v for k, v in document.items() if k != "Service"})


# --- a real service


@pytest.fixture
def sample(tmp_path: Path) -> Service:
    return start_sample(tmp_path, METRICS_NAMESPACE="sbcntr/test", METRICS_INTERVAL_SECONDS="2")


def metric_lines(service: Service) -> list[dict[str, Any]]:
    return [line for line in service.log_lines() if line["logger"] == "servicekit.metrics"]


def test_a_running_service_counts_every_request_and_its_latency(sample: Service) -> None:
    client_ms: list[float] = []
    slept_ms: list[float] = []
    with httpx.Client(base_url=sample.url, timeout=10) as client:
        for n in range(30):
            seconds = 0.01 + (n % 10) * 0.02  # 10 ms .. 190 ms
            slept_ms.append(seconds * 1000)
            begun = time.perf_counter()
            assert client.get("/sleep", params={"seconds": seconds}).status_code == 200
            client_ms.append((time.perf_counter() - begun) * 1000)
    # One connection each: a server closes its connection after an unhandled error.
    paths = ["/ok"] * 5 + ["/boom"] * 2 + ["/missing-status", "/nope/1", "/nope/2"]
    statuses = [httpx.get(f"{sample.url}{path}", timeout=10).status_code for path in paths]
    for _ in range(5):
        httpx.get(f"{sample.url}/readyz", timeout=10)
    assert statuses == [200] * 5 + [500] * 2 + [418, 404, 404]
    time.sleep(2.5)  # one periodic flush
    periodic = metric_lines(sample)
    assert periodic, "a line every METRICS_INTERVAL_SECONDS"
    sample.stop()
    lines = metric_lines(sample)
    assert len(lines) < 40  # one per route per interval, never per request
    for line in lines:
        assert spec_problems(line) == []
        assert line["level"] == "info"
        assert line["service"] == "sample"
        assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "sbcntr/test"

    def total(route: str, name: str) -> int:
        return sum(int(line.get(name, 0)) for line in lines if line.get("Route") == route)

    assert total("GET /sleep", "Requests") == 30
    assert total("GET /ok", "Requests") == 5
    assert total("GET /boom", "Status5xx") == 2
    assert total("GET /missing-status", "Status4xx") == 1
    assert total("GET (unmatched)", "Requests") == 2  # raw paths never become dimensions
    assert not [line for line in lines if "readyz" in line.get("Route", "")]

    values, counts = [], []
    for line in lines:
        if line.get("Route") == "GET /sleep":
            values += line["Latency"]["Values"]
            counts += line["Latency"]["Counts"]
    for q in (0.5, 0.9):
        server = percentile(values, counts, q)
        slept, client = exact_percentile(slept_ms, q), exact_percentile(client_ms, q)
        # The server's time lies between the sleep it was asked for and what the
        # client measured (which adds the round trip); buckets are within 2%.
        # The server's clock stops once the response is written, so a process
        # descheduled just then (a loaded machine) counts a few ms the client
        # did not wait: 5 ms of slack, a quarter of the 20 ms between sleeps.
        assert slept * 0.98 <= server <= client * 1.02 + 5, (q, slept, server, client)


# Methods the HTTP parser (llhttp) reads; any other token is a malformed request.
PARSED_METHODS = (
    *("DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK"),
    *("MKCOL", "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND"),
    *("UNBIND", "ACL", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY"),
    *("SUBSCRIBE", "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE"),
)


def test_fifty_methods_make_a_bounded_number_of_routes(sample: Service) -> None:
    """Unknown methods and 405s are one route: a client cannot add billed metrics."""
    methods = [*PARSED_METHODS, *[f"X{n:02d}" for n in range(50 - len(PARSED_METHODS))]]
    assert len(set(methods)) == 50
    for method in methods:
        for path in ("/ok", "/nope"):
            with socket.create_connection(("127.0.0.1", sample.port), timeout=10) as sock:
                sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                sock.recv(65536)
    sample.stop()
    routes = {line["Route"] for line in metric_lines(sample) if "Route" in line}
    # GET, HEAD and OPTIONS /ok (served; OPTIONS lists the methods); the routable
    # methods on an unmatched path; (other method) and (refused) for the rest.
    assert routes <= {
        "GET /ok",
        "HEAD /ok",
        "OPTIONS /ok",
        "(other method)",
        "(refused)",
        *(f"{method} (unmatched)" for method in ROUTABLE_METHODS),
    }, routes
