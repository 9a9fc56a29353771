"""The log contract, checked on the stdout of a real servicekit process."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.servicekit.conftest import SAMPLE, start_sample
from tests.support import ROOT, Service, base_env


def by_event(lines: list[dict[str, object]], event: str) -> list[dict[str, object]]:
    return [line for line in lines if line["event"] == event]


def test_every_line_is_json_including_uvicorn_and_warnings(sample: Service) -> None:
    for path in ("/ok", "/warn"):
        assert httpx.get(f"{sample.url}{path}").status_code == 200
    assert sample.stop() == 0
    lines = sample.log_lines()
    assert sample.stderr() == ""
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "py.warnings", "some.library", "sample"} <= loggers
    (warning,) = [line for line in lines if line["logger"] == "py.warnings"]
    assert warning["level"] == "warning"
    assert "sample deprecation" in str(warning["event"])
    (library,) = [line for line in lines if line["logger"] == "some.library"]
    assert library["event"] == "library warning with args"
    (handled,) = by_event(lines, "handled ok")
    assert handled["detail"] == "fine"
    assert handled["request_id"]  # app lines carry the request's id


def test_unhandled_exception_is_one_error_access_line_with_its_traceback(sample: Service) -> None:
    response = httpx.get(f"{sample.url}/boom", headers={"X-Request-Id": "boom-1"})
    assert response.status_code == 500
    # The error contract's body, and the connection's end announced.
    assert response.json() == {
        "error": "internal_error",
        "message": "internal error",
        "request_id": "boom-1",
    }
    assert response.headers["connection"] == "close"
    assert sample.stop() == 0
    raw = sample.stdout_path.read_text()
    lines = sample.log_lines()
    related = [line for line in lines if line.get("request_id") == "boom-1"]
    assert len(related) == 1
    # uvicorn's own "Exception in ASGI application\n" (which ends in a
    # newline, and carries no request id) is not written as a second line.
    assert [line for line in lines if line["level"] in ("error", "critical")] == related
    (access,) = related
    assert access["logger"] == "servicekit.access"
    assert access["level"] == "error"
    assert access["status"] == 500
    assert "Traceback (most recent call last)" in str(access["exception"])
    assert "RuntimeError: sample failure" in str(access["exception"])
    assert by_event(lines, "Exception in ASGI application") == []
    assert raw.count("\n") == len(lines)  # the traceback did not add lines


def test_levels_follow_status_and_health_checks_are_debug(sample: Service) -> None:
    httpx.get(f"{sample.url}/ok")
    httpx.get(f"{sample.url}/missing-status")
    httpx.get(f"{sample.url}/healthz")
    assert sample.stop() == 0
    access = {line["path"]: line for line in sample.access_lines()}
    assert access["/ok"]["level"] == "info"
    assert access["/missing-status"]["level"] == "warning"
    assert access["/missing-status"]["status"] == 418
    assert "/healthz" not in access  # debug, below the default INFO


def test_log_level_debug_shows_health_checks(tmp_path: Path) -> None:
    sample = start_sample(tmp_path, LOG_LEVEL="debug")
    httpx.get(f"{sample.url}/healthz")
    sample.stop()
    health = [line for line in sample.access_lines() if line["path"] == "/healthz"]
    assert health
    assert {line["level"] for line in health} == {"debug"}


def test_log_level_warning_drops_info_lines(tmp_path: Path) -> None:
    sample = start_sample(tmp_path, LOG_LEVEL="WARNING")
    httpx.get(f"{sample.url}/ok")
    httpx.get(f"{sample.url}/warn")
    sample.stop()
    lines = sample.log_lines()
    assert lines
    # Metrics lines are data, written whatever the level (docs/log-schema.md).
    messages = [line for line in lines if line["logger"] != "servicekit.metrics"]
    assert {line["level"] for line in messages} <= {"warning", "error", "critical"}
    assert by_event(lines, "handled ok") == []
    assert by_event(lines, "metrics"), "the shutdown flush writes the metrics lines"


def test_request_id_is_taken_or_made_and_returned(sample: Service) -> None:
    given = httpx.get(f"{sample.url}/ok", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = httpx.get(f"{sample.url}/ok")
    assert len(made.headers["x-request-id"]) == 32
    hostile = httpx.get(f"{sample.url}/ok", headers={"X-Request-Id": "bad id\twith spaces"})
    assert hostile.headers["x-request-id"] != "bad id\twith spaces"
    sample.stop()
    ids = [line["request_id"] for line in sample.access_lines()]
    assert ids == ["abc-123", made.headers["x-request-id"], hostile.headers["x-request-id"]]


def test_secrets_and_credentials_never_reach_the_log(sample: Service) -> None:
    httpx.get(
        f"{sample.url}/secret",
        headers={"Authorization": "Bearer token-in-header", "Cookie": "session=cookie-value"},
    )
    sample.stop()
    raw = sample.stdout_path.read_text()
    for secret in ("sample-secret-value", "token-in-header", "cookie-value"):
        assert secret not in raw
    (line,) = by_event(sample.log_lines(), "settings")
    assert line["api_key"] == "**********"


def test_invalid_configuration_is_one_json_line_and_exit_2(tmp_path: Path) -> None:
    env = base_env(PORT="not-a-port", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(SAMPLE)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr == ""
    import json  # noqa: PLC0415

    (line,) = [json.loads(raw) for raw in result.stdout.splitlines()]
    assert line["level"] == "critical"
    assert line["event"] == "invalid configuration"
    assert line["errors"][0]["variable"] == "PORT"


@pytest.mark.quick
def test_shutdown_line_reports_the_drain(sample: Service) -> None:
    start = time.monotonic()
    assert sample.stop(signal.SIGTERM) == 0
    assert time.monotonic() - start < 5
    (line,) = by_event(sample.log_lines(), "shutdown complete")
    assert line["signal"] == "SIGTERM"
    assert line["cut_short"] == 0


def test_a_failed_start_up_puts_its_traceback_in_exception(tmp_path: Path) -> None:
    env = base_env(PORT="0", PYTHONPATH=str(ROOT), SAMPLE_FAIL_AT_START="1")
    env["AWS_XRAY_SDK_ENABLED"] = "false"
    result = subprocess.run(
        [sys.executable, str(SAMPLE)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    lines = [json.loads(raw) for raw in result.stdout.splitlines()]
    (failed,) = [line for line in lines if "exception" in line]
    assert failed["event"] == "lifespan failed"
    assert "RuntimeError: sample start-up failure" in failed["exception"]
    assert not any(str(line["event"]).startswith("Traceback") for line in lines)


def test_a_second_signal_is_one_warning_without_a_traceback(tmp_path: Path) -> None:
    sample = start_sample(tmp_path, SHUTDOWN_DRAIN_SECONDS="5")
    with httpx.Client(timeout=30) as client:

        def slow_request() -> None:
            with contextlib.suppress(httpx.HTTPError):
                client.get(f"{sample.url}/sleep?seconds=20")

        slow = threading.Thread(target=slow_request)
        slow.start()
        time.sleep(0.5)
        sample.send(signal.SIGTERM)
        time.sleep(0.5)
        sample.send(signal.SIGTERM)
        sample.wait(timeout=15)
        slow.join(timeout=15)
    lines = sample.log_lines()
    assert [line for line in lines if "exception" in line] == []
    (forced,) = by_event(lines, "shutdown forced")
    assert forced["level"] == "warning"
    assert forced["forced_by"] == "SIGTERM"
    assert by_event(lines, "lifespan cancelled")[0]["level"] == "warning"
    # The one error: the request the forced stop cut short.
    (error,) = [line for line in lines if line["level"] in ("error", "critical")]
    assert (error["path"], error["cancelled"]) == ("/sleep", True)


def test_a_cross_field_error_names_its_variable(tmp_path: Path) -> None:
    env = base_env(
        PORT="0", PYTHONPATH=str(ROOT), SHUTDOWN_DRAIN_SECONDS="60", SHUTDOWN_GRACE_SECONDS="100"
    )
    result = subprocess.run(
        [sys.executable, str(SAMPLE)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    (line,) = [json.loads(raw) for raw in result.stdout.splitlines()]
    assert line["errors"][0]["variable"] == "SHUTDOWN_DRAIN_SECONDS"
