"""The FireLens configuration read as text: its keys, includes, variables and
Match patterns. Fast, and run where there is no Fluent Bit; what the router
does with real lines is tested by running it (test_router.py).
"""

from __future__ import annotations

import re

from tests.firelens.classic import Section, parse, variables
from tests.firelens.router import compose_env, image_defaults
from tests.support import ROOT

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
        "scheduler.base",
        "scheduler.cap",
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
    ("FILTER", "type_converter"): {
        "name",
        "match",
        "match_regex",
        "int_key",
        "uint_key",
        "float_key",
        "str_key",
    },
    ("FILTER", "modify"): {"name", "match", "match_regex", "remove", "rename", "add", "set"},
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
        "tls.verify",
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
        "port",
        "tls.verify",
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
    """The log router's environment under docker compose: the image's defaults, then compose's."""
    return {**image_defaults(), **compose_env()}


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
    assert all(env[name] for name in used), "an empty value is as bad as none"


def test_the_image_sets_production_timings_and_verifies_tls() -> None:
    defaults = image_defaults()
    assert defaults["OUTPUT_TLS_VERIFY"] == "On"
    assert defaults["S3_UPLOAD_TIMEOUT"] == "1m"
    assert defaults["CLOUDWATCH_PORT"] == "443"
    assert int(defaults["ROUTER_GRACE_SECONDS"]) >= 10
    assert 0 < int(defaults["ROUTER_RETRY_LIMIT"]) <= 10
    # Only the local emulator, whose certificate is made at its start, goes unverified.
    assert compose_env()["OUTPUT_TLS_VERIFY"] == "Off"


def test_config_file_is_not_the_one_firelens_generates() -> None:
    assert "/fluent-bit/etc/fluent-bit.conf" not in IMAGE_PATHS


def test_shutdown_and_buffers_fit_the_task() -> None:
    service = next(s for s in sections() if s.kind == "SERVICE")
    assert service.get("grace") == "${ROUTER_GRACE_SECONDS}"
    assert (service.get("storage.path") or "").startswith("/var/fluent-bit/")
    s3 = next(s for s in sections() if s.plugin == "s3")
    assert (s3.get("store_dir") or "").startswith("/var/fluent-bit/")
    assert s3.get("upload_timeout") == "${S3_UPLOAD_TIMEOUT}"
    assert s3.get("use_put_object") == "On"
    assert s3.get("compression") == "gzip"
    for output in (s for s in sections() if s.kind == "OUTPUT"):
        assert output.get("retry_limit") == "${ROUTER_RETRY_LIMIT}", output.source
        assert output.get("tls.verify") == "${OUTPUT_TLS_VERIFY}", output.source


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
        if section.kind in ("FILTER", "OUTPUT") and section.plugin not in (
            "cloudwatch_logs",
            "modify",
        ):
            pattern = section.get("match_regex") or ""
            for tag in TAGS_OF_APPS:
                assert re.search(pattern, tag), f"{section.source} misses {tag}"
            for tag in TAGS_OF_OTHERS:
                assert not re.search(pattern, tag), f"{section.source} catches {tag}"


def test_the_routing_field_is_removed_from_records_and_copies() -> None:
    (remover,) = [s for s in sections() if s.plugin == "modify"]
    pattern = remover.get("match_regex") or ""
    for tag in TAGS_OF_APPS:
        assert re.search(pattern, tag)
        assert re.search(pattern, f"cwl.{tag}")
        assert re.search(pattern, f"emf.{tag}")
    for tag in TAGS_OF_OTHERS[:-1]:
        assert not re.search(pattern, tag), tag


def test_cloudwatch_matches_only_the_copies() -> None:
    copies, metrics = [s for s in sections() if s.plugin == "cloudwatch_logs"]
    for section, prefix, other in ((copies, "cwl", "emf"), (metrics, "emf", "cwl")):
        pattern = section.get("match_regex") or ""
        for tag in TAGS_OF_APPS:
            assert re.search(pattern, f"{prefix}.{tag}")
            assert not re.search(pattern, f"{other}.{tag}")
            assert not re.search(pattern, tag)
        assert not re.search(pattern, f"{prefix}.log-router-firelens-{TASK_ID}")
    # CloudWatch extracts the metrics only from events sent with this format.
    assert metrics.get("log_format") == "json/emf"
    assert copies.get("log_format") is None
