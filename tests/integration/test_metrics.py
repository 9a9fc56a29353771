"""The frontend's metrics of its backend calls, on both real services."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import StartService
from tests.integration.conftest import start_stack
from tests.servicekit.test_metrics import spec_problems


@pytest.mark.slow
def test_backend_calls_are_counted_per_operation_with_their_errors(
    start: StartService, tmp_path: Path
) -> None:
    stack = start_stack(start, tmp_path)
    front = stack.frontend.url
    items = httpx.get(f"{front}/api/items", timeout=10).json()["data"]
    for item in items[:3]:
        response = httpx.put(
            f"{front}/api/items/{item['id']}/favorite", json={"favorite": True}, timeout=10
        )
        assert response.status_code == 200
    assert httpx.get(f"{front}/items", timeout=10).status_code == 200
    stack.backend.stop()
    assert httpx.get(f"{front}/items", timeout=10).status_code == 503
    stack.frontend.stop()

    lines = [
        line
        for line in stack.frontend.log_lines()
        if line["logger"] == "servicekit.metrics" and "Operation" in line
    ]
    assert all(spec_problems(line) == [] for line in lines)
    by_operation = {line["Operation"]: line for line in lines}
    assert by_operation["PUT /v1/items/{id}/favorite"]["BackendCalls"] == 3
    assert by_operation["PUT /v1/items/{id}/favorite"]["BackendErrors"] == 0
    listed = by_operation["GET /v1/items"]
    assert (listed["BackendCalls"], listed["BackendErrors"]) == (3, 1)
    assert listed["BackendLatency"]["Count"] == 3
    ids = {f"/{item['id']}" for item in items[:3]}
    assert not [op for op in by_operation if any(i + "/" in op or op.endswith(i) for i in ids)]
