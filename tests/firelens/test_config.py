"""The FireLens configuration: its syntax and keys, its Match patterns, and where
each kind of log line from the real services ends up.

No Fluent Bit binary is packaged for this machine: these tests check the
configuration's rules (read from the files and evaluated in Python), not
Fluent Bit itself. Where ``fluent-bit`` is on PATH, it also validates the
files for real.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.firelens.classic import Section, parse, variables
from tests.firelens.routing import Router, python_time_format
from tests.servicekit.test_logs import start_sample
from tests.support import ROOT, sqlite_url, start_service

CONF = ROOT / "firelens" / "conf"
IMAGE_DIR = "/fluent-bit/etc/sbcntr"
IMAGE_PATHS = {f"{IMAGE_DIR}/{p.name}": p for p in CONF.iterdir()}
TASK_ID = "0123456789abcdef0123456789abcdef"

KNOWN_KEYS: dict[tuple[str, str], set[str]] = {
    ("SERVICE", "service"): {
        "flush",
        "grace",
        "log_level",
        "parsers_file",
        "http_server",
        "http_listen",
        "http_port",
        "storage.path",
        "storage.sync",
        "storage.backlog.mem_limit",
        "storage.metrics",
        "health_check",
    },
    ("INPUT", "forward"): {"name", "listen", "port", "tag", "unix_path", "buffer_chunk_size"},
    ("FILTER", "multiline"): {
        "name",
        "match",
        "match_regex",
        "multiline.key_content",
        "mode",
        "multiline.parser",
        "flush_ms",
        "emitter_name",
        "buffer",
    },
    ("FILTER", "parser"): {
        "name",
        "match",
        "match_regex",
        "key_name",
        "parser",
        "reserve_data",
        "preserve_key",
    },
    ("FILTER", "grep"): {"name", "match", "match_regex", "regex", "exclude", "logical_op"},
    ("FILTER", "rewrite_tag"): {
        "name",
        "match",
        "match_regex",
        "rule",
        "emitter_name",
        "emitter_storage.type",
        "emitter_mem_buf_limit",
    },
    ("OUTPUT", "s3"): {
        "name",
        "match",
        "match_regex",
        "region",
        "bucket",
        "endpoint",
        "use_put_object",
        "total_file_size",
        "upload_timeout",
        "compression",
        "store_dir",
        "s3_key_format",
        "s3_key_format_tag_delimiters",
        "retry_limit",
        "workers",
        "upload_chunk_size",
        "role_arn",
        "storage_class",
        "content_type",
    },
    ("OUTPUT", "cloudwatch_logs"): {
        "name",
        "match",
        "match_regex",
        "region",
        "endpoint",
        "log_group_name",
        "log_group_template",
        "log_stream_name",
        "log_stream_prefix",
        "log_stream_template",
        "auto_create_group",
        "log_retention_days",
        "workers",
        "retry_limit",
        "role_arn",
        "auto_retry_requests",
        "log_key",
        "log_format",
    },
    ("PARSER", "parser"): {
        "name",
        "format",
        "time_key",
        "time_format",
        "time_keep",
        "regex",
        "types",
    },
}
REQUIRED: dict[tuple[str, str], set[str]] = {
    ("FILTER", "parser"): {"key_name", "parser"},
    ("FILTER", "rewrite_tag"): {"rule", "emitter_name"},
    ("OUTPUT", "s3"): {"bucket", "region", "store_dir", "total_file_size", "upload_timeout"},
    ("OUTPUT", "cloudwatch_logs"): {"region", "log_group_name", "log_stream_prefix"},
    ("PARSER", "parser"): {"name", "format", "time_key", "time_format"},
}


def sections() -> list[Section]:
    """The router's configuration as FireLens loads it: our file, its includes, its parsers."""
    found = parse(CONF / "sbcntr.conf", IMAGE_PATHS)
    for service in [s for s in found if s.kind == "SERVICE"]:
        for parsers_file in service.all("parsers_file"):
            assert parsers_file in IMAGE_PATHS, (
                f"{service.source}: {parsers_file} is not in the image"
            )
            found += parse(IMAGE_PATHS[parsers_file], IMAGE_PATHS)
    return found


def router_env() -> dict[str, str]:
    """The log router's environment as docker compose gives it (``$$`` is a literal ``$``)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["log-router"]["environment"]
    return {k: str(v).replace("$$", "$") for k, v in env.items()}


def kind_key(section: Section) -> tuple[str, str]:
    return (section.kind, "parser" if section.kind == "PARSER" else section.plugin)


def test_every_section_and_key_is_known_and_required_keys_are_present() -> None:
    found = sections() + parse(CONF / "local.conf", IMAGE_PATHS)
    assert {s.kind for s in found} == {"SERVICE", "INPUT", "FILTER", "OUTPUT", "PARSER"}
    for section in found:
        known = KNOWN_KEYS.get(kind_key(section))
        assert known is not None, f"{section.source}: unknown plugin {kind_key(section)}"
        unknown = {key for key, _ in section.entries} - known
        assert not unknown, f"{section.source}: unknown keys {unknown}"
        missing = REQUIRED.get(kind_key(section), set()) - {key for key, _ in section.entries}
        assert not missing, f"{section.source}: missing {missing}"
        if section.kind in ("FILTER", "OUTPUT"):
            assert section.get("match_regex") or section.get("match"), section.source


def test_includes_and_parsers_files_exist() -> None:
    service = next(s for s in sections() if s.kind == "SERVICE")
    assert service.get("parsers_file") in IMAGE_PATHS
    parser_names = {s.get("name") for s in sections() if s.kind == "PARSER"}
    for section in sections():
        if section.plugin == "parser" and section.kind == "FILTER":
            assert section.get("parser") in parser_names
    # The Dockerfile copies these files to where the includes name them.
    assert "COPY conf/ /fluent-bit/etc/sbcntr/" in (ROOT / "firelens/Dockerfile").read_text()


def test_every_variable_is_set_for_the_router() -> None:
    used = variables(sections())
    assert used, "names come from the environment"
    env = router_env()
    assert used <= env.keys(), f"not set in docker-compose.yml: {used - env.keys()}"


def test_config_file_is_not_the_one_firelens_generates() -> None:
    assert "/fluent-bit/etc/fluent-bit.conf" not in IMAGE_PATHS


def test_shutdown_and_buffers_fit_the_task() -> None:
    service = next(s for s in sections() if s.kind == "SERVICE")
    assert int(service.get("grace") or 0) >= 10
    assert (service.get("storage.path") or "").startswith("/var/fluent-bit/")
    s3 = next(s for s in sections() if s.plugin == "s3")
    assert (s3.get("store_dir") or "").startswith("/var/fluent-bit/")
    assert s3.get("upload_timeout") == "1m"
    assert s3.get("use_put_object") == "On"
    assert s3.get("compression") == "gzip"
    for output in (s for s in sections() if s.kind == "OUTPUT"):
        assert 0 < int(output.get("retry_limit") or 0) <= 10, output.source


TAGS_OF_APPS = [
    f"frontend-firelens-{TASK_ID}",
    f"backend-firelens-{TASK_ID}",
    "backend-firelens-local",
]
TAGS_OF_OTHERS = [
    f"log-router-firelens-{TASK_ID}",
    f"xray-daemon-firelens-{TASK_ID}",
    "frontend",
    f"my-backend-firelens-{TASK_ID}",
    f"cwl.backend-firelens-{TASK_ID}",
]


def test_filters_and_s3_match_the_apps_tags_and_nothing_else() -> None:
    for section in sections():
        if section.kind in ("FILTER", "OUTPUT") and section.plugin != "cloudwatch_logs":
            pattern = section.get("match_regex") or ""
            for tag in TAGS_OF_APPS:
                assert re.search(pattern, tag), f"{section.source} misses {tag}"
            for tag in TAGS_OF_OTHERS:
                assert not re.search(pattern, tag), f"{section.source} catches {tag}"


def test_cloudwatch_matches_only_the_copies() -> None:
    (cloudwatch,) = [s for s in sections() if s.plugin == "cloudwatch_logs"]
    pattern = cloudwatch.get("match_regex") or ""
    for tag in TAGS_OF_APPS:
        assert re.search(pattern, f"cwl.{tag}")
        assert not re.search(pattern, tag)
    assert not re.search(pattern, f"cwl.log-router-firelens-{TASK_ID}")


def test_parser_reads_the_log_schema_timestamp() -> None:
    (parser,) = [s for s in sections() if s.kind == "PARSER"]
    from datetime import datetime  # noqa: PLC0415

    parsed = datetime.strptime(
        "2026-11-26T18:25:29.739Z", python_time_format(parser.get("time_format") or "")
    )
    assert (parsed.year, parsed.microsecond) == (2026, 739000)


def firelens_record(service: str, line: str) -> tuple[str, dict[str, Any]]:
    """A record as FireLens delivers it: the line under "log" and ECS metadata."""
    return (
        f"{service}-firelens-{TASK_ID}",
        {
            "log": line,
            "source": "stdout",
            "container_id": "abc",
            "container_name": service,
            "ecs_cluster": "sbcntr",
            "ecs_task_arn": f"arn:aws:ecs:ap-northeast-1:123456789012:task/sbcntr/{TASK_ID}",
            "ecs_task_definition": f"sbcntr-{service}:7",
        },
    )


def destinations(router: Router, service: str, line: str) -> dict[str, str]:
    tag, record = firelens_record(service, line)
    return {d.output: d.destination for d in router.route(tag, record)}


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Real log lines: success, 404, 502 and 500, warnings, health checks, a traceback."""
    tmp = tmp_path_factory.mktemp("firelens")
    debug = {"LOG_LEVEL": "DEBUG", "AWS_XRAY_SDK_ENABLED": "false"}
    backend = start_service(
        "backend",
        tmp,
        env={
            **debug,
            "DATABASE_URL": sqlite_url(tmp / "f.sqlite3"),
            "FAULT_INJECTION_ENABLED": "true",
        },
    )
    frontend = start_service("frontend", tmp, env={**debug, "BACKEND_URL": backend.url})
    sample = start_sample(tmp, LOG_LEVEL="DEBUG")
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
    return {
        "frontend": frontend.stdout_path.read_text().splitlines(),
        "backend": backend.stdout_path.read_text().splitlines(),
        "sample": sample.stdout_path.read_text().splitlines(),
    }


def expected(line: dict[str, Any]) -> set[str]:
    """Where the routing design says a record goes (firelens/README.md)."""
    if line.get("path") in ("/healthz", "/readyz"):
        return set()
    if line["level"] in ("warning", "error", "critical"):
        return {"s3", "cloudwatch_logs"}
    if isinstance(line.get("status"), int) and line["status"] >= 500:
        return {"s3", "cloudwatch_logs"}
    return {"s3"}


def test_each_real_log_line_lands_where_the_design_says(captured: dict[str, list[str]]) -> None:
    router = Router(sections(), router_env())
    seen: set[str] = set()
    for source, lines in captured.items():
        service = "backend" if source == "sample" else source
        for raw in lines:
            line = json.loads(raw)
            got = destinations(router, service, raw)
            assert set(got) == expected(line), (raw, got)
            if "s3" in got:
                assert got["s3"] == f"/sbcntr/local/{service}"
            if "cloudwatch_logs" in got:
                assert got["cloudwatch_logs"] == f"/sbcntr/local/{line['service']}"
            seen.add(
                "health"
                if line.get("path") in ("/healthz", "/readyz")
                else "traceback"
                if "exception" in line
                else f"status {line['status'] // 100}xx"
                if "status" in line
                else line["level"]
            )
    # The captured lines cover every kind the routing distinguishes.
    assert {
        "health",
        "traceback",
        "status 2xx",
        "status 4xx",
        "status 5xx",
        "info",
        "warning",
    } <= seen


def test_lines_that_are_not_json_are_kept_and_reach_cloudwatch() -> None:
    router = Router(sections(), router_env())
    raw = "Traceback (most recent call last):  ModuleNotFoundError: No module named 'backend'"
    tag, record = firelens_record("backend", raw)
    deliveries = router.route(tag, record)
    assert {d.output for d in deliveries} == {"s3", "cloudwatch_logs"}
    for delivery in deliveries:
        assert delivery.record["log"] == raw
        assert delivery.record["ecs_task_arn"].endswith(TASK_ID)
    cloudwatch = next(d for d in deliveries if d.output == "cloudwatch_logs")
    assert cloudwatch.destination == router_env()["LOG_GROUP_NAME"]


def test_ecs_metadata_is_kept_next_to_the_parsed_fields() -> None:
    router = Router(sections(), router_env())
    line = json.dumps(
        {
            "timestamp": "2026-11-26T18:25:29.739Z",
            "level": "error",
            "service": "backend",
            "event": "request",
            "logger": "servicekit.access",
            "status": 500,
            "path": "/v1/items",
        }
    )
    tag, record = firelens_record("backend", line)
    (s3, cloudwatch) = sorted(router.route(tag, record), key=lambda d: d.output != "s3")
    for delivery in (s3, cloudwatch):
        assert delivery.record["status"] == 500
        assert delivery.record["ecs_cluster"] == "sbcntr"
        assert delivery.record["container_name"] == "backend"
        assert "log" not in delivery.record


def test_the_switch_sends_everything_to_cloudwatch() -> None:
    env = {**router_env(), "CLOUDWATCH_LEVELS": "."}
    router = Router(sections(), env)
    line = json.dumps(
        {
            "timestamp": "2026-11-26T18:25:29.739Z",
            "level": "info",
            "service": "frontend",
            "event": "request",
            "logger": "servicekit.access",
            "status": 200,
            "path": "/",
        }
    )
    assert set(destinations(router, "frontend", line)) == {"s3", "cloudwatch_logs"}
    assert set(destinations(Router(sections(), router_env()), "frontend", line)) == {"s3"}


@pytest.mark.skipif(shutil.which("fluent-bit") is None, reason="no fluent-bit executable on PATH")
def test_fluent_bit_accepts_the_configuration(tmp_path: Path) -> None:
    """``fluent-bit --dry-run`` on the files, with the image paths pointed at a copy."""
    for path in CONF.iterdir():
        text = path.read_text().replace(IMAGE_DIR, str(tmp_path))
        (tmp_path / path.name).write_text(text)
    result = subprocess.run(
        ["fluent-bit", "--dry-run", "-c", str(tmp_path / "local.conf")],
        env={**router_env(), "PATH": "/usr/local/bin:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
