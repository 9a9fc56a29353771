"""What a service's lifetime leaves behind: process-wide state, shutdown steps, configuration.

Building an application changes nothing outside it (the runner tunes the
process); every shutdown step runs whatever the one before it did; what the
services read from the environment goes through the settings model.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pydantic import ValidationError

import servicekit.app
import servicekit.tracing_otel
from servicekit.logs import configure_logging, get_logger
from servicekit.metrics import Metrics
from servicekit.runner import YOUNG_COLLECTION_THRESHOLD, tune_garbage_collector
from tests.servicekit.sample_service import SampleSettings, create_app
from tests.support import ScriptedBackend


@pytest.fixture
def gc_state() -> Iterator[None]:
    """Put the collector back as it was, whatever a test did to it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_building_and_running_an_app_leaves_the_garbage_collector_alone(
    gc_state: None,
) -> None:
    gc.unfreeze()
    before = (gc.get_freeze_count(), gc.get_threshold())
    with TestClient(create_app(SampleSettings(metrics_enabled=False))) as client:
        assert client.get("/ok").status_code == 200
    assert (gc.get_freeze_count(), gc.get_threshold()) == before


def test_the_runner_freezes_start_up_objects_and_makes_young_collections_rarer(
    gc_state: None,
) -> None:
    gc.unfreeze()
    tune_garbage_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD


def test_building_an_app_asks_nothing_of_the_metadata_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On ECS the runner reads the identity once, before serving
    # (tests/frontend/test_page_features.py runs that); the factory does not.
    with ScriptedBackend([(200, b"{}")]) as metadata:
        monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", f"{metadata.url}/v4/abc")
        settings = SampleSettings(metrics_enabled=False)
        assert settings.on_ecs
        with TestClient(create_app(settings)) as client:
            served_by = client.get("/ok").headers["x-served-by"]
        assert metadata.requests == []
    assert served_by.startswith("task=")  # the host's identity


def lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


@pytest.fixture
def json_logs() -> None:
    configure_logging("sample", "INFO")


def test_loggers_already_used_follow_the_last_configuration(
    capfd: pytest.CaptureFixture[str],
) -> None:
    log = get_logger("sample.reconfigured")
    configure_logging("first", "INFO")
    log.info("under the first")
    configure_logging("second", "WARNING")
    log.info("dropped: below the second's level")
    log.warning("under the second")
    configure_logging("sample", "INFO")
    written = [(line["service"], line["event"]) for line in lines(capfd.readouterr().out)]
    assert written == [("first", "under the first"), ("second", "under the second")]


def test_a_failing_metrics_flush_still_shuts_tracing_down(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], json_logs: None
) -> None:
    steps: list[str] = []

    def failing_flush(self: Metrics) -> int:
        steps.append("metrics")
        msg = "disk full"
        raise OSError(msg)

    monkeypatch.setattr(Metrics, "flush", failing_flush)
    monkeypatch.setattr(servicekit.app, "shutdown_tracing", lambda: steps.append("tracing"))
    with TestClient(create_app(SampleSettings(metrics_enabled=True))) as client:
        assert client.get("/ok").status_code == 200
    assert steps == ["metrics", "tracing"]
    failed = [line for line in lines(capfd.readouterr().out) if line["level"] == "error"]
    assert [line["event"] for line in failed] == ["metrics flush failed"]
    assert "disk full" in failed[0]["exception"]


def test_a_failed_periodic_flush_is_logged_and_the_writer_goes_on(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], json_logs: None
) -> None:
    flushes: list[int] = []

    def flush_failing_once(self: Metrics) -> int:
        flushes.append(len(flushes))
        if len(flushes) == 1:
            msg = "first flush fails"
            raise OSError(msg)
        return 0

    monkeypatch.setattr(Metrics, "flush", flush_failing_once)
    metrics = Metrics("sample", "sbcntr/test", interval_seconds=1)
    metrics.interval_seconds = 0.01  # below the settings' 1 s floor, for a quick test

    async def run() -> None:
        metrics.start()
        for _ in range(500):
            if len(flushes) >= 3:
                break
            await asyncio.sleep(0.01)
        await metrics.stop()

    asyncio.run(run())
    assert len(flushes) >= 4  # at least two more periodic flushes, then the last one
    events = [line["event"] for line in lines(capfd.readouterr().out)]
    assert events.count("metrics flush failed") == 1


def test_the_batch_span_processor_takes_its_settings_from_the_settings_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "250")
    monkeypatch.setenv("otel_bsp_max_export_batch_size", "64")  # names are case-insensitive
    seen: dict[str, Any] = {}
    original = BatchSpanProcessor.__init__

    def recording_init(self: BatchSpanProcessor, exporter: Any, **kwargs: Any) -> None:
        seen.update(kwargs)
        original(self, exporter, **kwargs)

    monkeypatch.setattr(BatchSpanProcessor, "__init__", recording_init)
    settings = SampleSettings(tracing_backend="otel", metrics_enabled=False)
    try:
        servicekit.tracing_otel.configure(settings)
    finally:
        servicekit.tracing_otel.shutdown()
    assert seen == {
        "max_queue_size": 2048,
        "schedule_delay_millis": 250,
        "max_export_batch_size": 64,
        "export_timeout_millis": 30_000,
    }


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY"),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "0"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        (
            {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512", "OTEL_BSP_MAX_QUEUE_SIZE": "256"},
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE must not exceed OTEL_BSP_MAX_QUEUE_SIZE",
        ),
        ({"ECS_CONTAINER_METADATA_URI_V4": "not a url"}, "ECS_CONTAINER_METADATA_URI_V4"),
    ],
)
def test_bad_otel_and_metadata_values_are_refused_by_the_settings(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=named):
        SampleSettings()
