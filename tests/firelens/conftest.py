"""Real log lines of the real services, for the router tests.

The services run as processes on loopback at ``LOG_LEVEL=DEBUG`` and are
driven through every kind of line the routing tells apart: 2xx, 4xx and 5xx
access lines (5xx by fault injection), warnings, health checks, an unhandled
exception with its traceback, a line over 16 KiB (a traceback with a long
message, written by servicekit's logging), and a line that is not JSON.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.firelens.forward import PARTIAL_SIZE
from tests.servicekit.test_logs import start_sample
from tests.support import base_env, sqlite_url, start_service

HEALTH_PATHS = ("/healthz", "/readyz")
DEFAULT_LEVELS = "^(warning|error|critical)$"
# A crash before logging is configured: the only kind of line that is not JSON.
NOT_JSON = "Traceback (most recent call last):  ModuleNotFoundError: No module named 'backend'"
_BIG_LINE = """
from servicekit.logs import configure_logging, get_logger
configure_logging("backend")
try:
    raise ValueError("x" * {size})
except ValueError:
    get_logger("backend.app").exception("big failure")
"""


@dataclass(frozen=True)
class Line:
    """One stdout line of a container, and what the routing design does with it."""

    container: str
    raw: str

    @property
    def record(self) -> dict[str, Any] | None:
        """The line's JSON object, or None for a line that is not JSON."""
        try:
            parsed = json.loads(self.raw)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    @property
    def shipped(self) -> bool:
        """Health-check access lines are dropped; every other line goes to S3."""
        return (self.record or {}).get("path") not in HEALTH_PATHS

    @property
    def is_metrics(self) -> bool:
        """An EMF metrics line: copied to the metrics group, never to the level copies."""
        return (self.record or {}).get("logger") == "servicekit.metrics"

    def to_cloudwatch(self, levels: str = DEFAULT_LEVELS) -> bool:
        """firelens/README.md: levels matching ``levels`` (CLOUDWATCH_LEVELS), 5xx access
        lines whatever their level, and lines that are not JSON; never metrics lines."""
        record = self.record
        if record is None:
            return True
        if not self.shipped or self.is_metrics:
            return False
        status = record.get("status")
        return bool(re.search(levels, record["level"])) or (
            isinstance(status, int) and status >= 500
        )

    @property
    def kind(self) -> str:
        record = self.record
        if record is None:
            return "not json"
        if len(self.raw) > PARTIAL_SIZE:
            return "over 16 KiB"
        if record.get("path") in HEALTH_PATHS:
            return "health"
        if self.is_metrics:
            return "metrics"
        if "exception" in record:
            return "traceback"
        if "status" in record:
            return f"status {record['status'] // 100}xx"
        return str(record["level"])


def big_line(size: int = 40_000) -> str:
    """An error line with a traceback over 16 KiB, as servicekit writes it."""
    result = subprocess.run(
        [sys.executable, "-c", _BIG_LINE.format(size=size)],
        env=base_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    (line,) = result.stdout.splitlines()
    assert len(line) > 2 * PARTIAL_SIZE
    return line


@pytest.fixture(scope="session")
def app_lines(tmp_path_factory: pytest.TempPathFactory) -> list[Line]:
    """Every line the services wrote while driven through each kind of line, in order."""
    tmp = tmp_path_factory.mktemp("firelens-lines")
    debug = {"LOG_LEVEL": "DEBUG", "AWS_XRAY_SDK_ENABLED": "false"}
    # Started side by side, then waited for.
    backend = start_service(
        "backend",
        tmp,
        env={
            **debug,
            "DATABASE_URL": sqlite_url(tmp / "f.sqlite3"),
            "FAULT_INJECTION_ENABLED": "true",
        },
        wait=False,
    )
    frontend = start_service("frontend", tmp, env={**debug, "BACKEND_URL": backend.url}, wait=False)
    # servicekit's sample service raises on /boom; it runs as the backend container.
    sample = start_sample(tmp, LOG_LEVEL="DEBUG", SERVICE_NAME="backend")
    backend.wait_ready()
    frontend.wait_ready()
    try:
        httpx.get(f"{frontend.url}/items")
        httpx.get(f"{frontend.url}/healthz")
        httpx.get(f"{frontend.url}/no-such-page")
        httpx.put(f"{backend.url}/admin/faults", json={"error_rate": 1.0})
        httpx.get(f"{frontend.url}/")
        httpx.get(f"{sample.url}/boom")
    finally:
        for service in (frontend, backend, sample):
            service.stop(signal.SIGTERM)
    lines = [
        Line(container, raw)
        for container, service in (
            ("frontend", frontend),
            ("backend", backend),
            ("backend", sample),
        )
        for raw in service.stdout_path.read_text().splitlines()
    ]
    lines += [Line("backend", NOT_JSON), Line("backend", big_line())]
    kinds = {line.kind for line in lines}
    wanted = {"health", "traceback", "status 2xx", "status 4xx", "status 5xx", "info", "warning"}
    wanted.add("metrics")  # written at shutdown, after the drain
    assert wanted | {"not json", "over 16 KiB"} <= kinds, kinds
    return lines
