"""The ADOT collector's configuration and its compose service, checked as files.

No collector binary is installed here (it ships as a container image only),
so the checks are the ones the collector makes at start that a reader can get
wrong: every component a pipeline names is defined, the OTLP receiver listens
where the services send, the traces go to the ``awsxray`` exporter through the
batch processor, and every ``${env:NAME}`` is set where the collector runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from servicekit.settings import ServiceSettings
from tests.support import ROOT

CONFIG = ROOT / "otel-collector" / "config.yaml"
IMAGE = re.compile(r"^public\.ecr\.aws/aws-observability/aws-otel-collector:v\d+\.\d+\.\d+$")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def pipeline_problems(config: dict[str, Any]) -> list[str]:
    """What the collector would refuse: a pipeline naming an undefined component."""
    problems = []
    service = config.get("service", {})
    for name in service.get("extensions", []):
        if name not in config.get("extensions", {}):
            problems.append(f"extension {name} is not defined")
    pipelines = service.get("pipelines", {})
    if not pipelines:
        problems.append("no pipeline")
    for pipeline, parts in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for name in parts.get(kind, []):
                if name not in (config.get(kind) or {}):
                    problems.append(f"{pipeline}: {kind[:-1]} {name} is not defined")
        if not parts.get("receivers") or not parts.get("exporters"):
            problems.append(f"{pipeline}: needs a receiver and an exporter")
    return problems


def test_every_pipeline_component_is_defined() -> None:
    config = load(CONFIG)
    assert pipeline_problems(config) == []
    # The check itself refuses what the collector refuses.
    broken = {**config, "exporters": {}}
    assert pipeline_problems(broken) == ["traces: exporter awsxray is not defined"]


def test_traces_go_from_otlp_through_the_batch_processor_to_xray() -> None:
    config = load(CONFIG)
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    assert traces["exporters"] == ["awsxray"]
    # The memory limiter must come first to protect what follows it.
    assert traces["processors"][0] == "memory_limiter"
    assert any(p.split("/")[0] == "batch" for p in traces["processors"])
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert "health_check" in config["service"]["extensions"]


def test_the_sampling_api_is_proxied_where_the_services_ask_for_it() -> None:
    # XRAY_CENTRALIZED_SAMPLING on the OpenTelemetry path asks the sidecar on
    # TCP 2000 (AWS_XRAY_DAEMON_ADDRESS's default), as the X-Ray daemon answers.
    config = load(CONFIG)
    assert "awsproxy" in config["service"]["extensions"]
    assert config["extensions"]["awsproxy"]["endpoint"].endswith(":2000")
    default_address = ServiceSettings.model_fields["xray_daemon_address"].default
    assert default_address.endswith(":2000")


def test_compose_starts_the_daemon_by_default_and_the_collector_with_its_profile() -> None:
    compose = load(ROOT / "docker-compose.yml")
    services = compose["services"]
    assert "profiles" not in services["xray-daemon"]
    collector = services["otel-collector"]
    assert collector["profiles"] == ["otel"]
    # Built from otel-collector/: the pinned collector image with this configuration.
    assert (ROOT / collector["build"]["context"]).resolve() == CONFIG.parent
    dockerfile = (CONFIG.parent / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)$", dockerfile, re.MULTILINE)
    assert IMAGE.match(base), base
    (target,) = re.findall(r"^COPY --chmod=0444 config\.yaml (\S+)$", dockerfile, re.MULTILINE)
    assert f'CMD ["--config={target}"]' in dockerfile
    # Every variable the configuration reads is set in the container.
    needed = set(re.findall(r"\$\{env:([A-Z_][A-Z0-9_]*)(?::-[^}]*)?\}", CONFIG.read_text()))
    assert needed, "the configuration reads no variable"
    assert needed <= collector["environment"].keys()
    # The services send to the collector's OTLP/HTTP port, on a network they share.
    http_port = load(CONFIG)["receivers"]["otlp"]["protocols"]["http"]["endpoint"].split(":")[-1]
    for name in ("frontend", "backend"):
        environment = services[name]["environment"]
        assert environment["TRACING_BACKEND"] == "${TRACING_BACKEND:-xray-sdk}"
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{http_port}"
        assert set(services[name]["networks"]) & set(collector["networks"])
