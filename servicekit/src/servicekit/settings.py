"""Settings shared by every service, read from environment variables.

ECS task definitions pass configuration as environment variables and secrets
as environment variables filled from Secrets Manager or SSM Parameter Store;
docker compose and local runs do the same. Secrets are typed ``SecretStr`` so
that they never appear in a log line or a ``repr``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, AliasChoices, BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from servicekit.sampling_rules import LocalRules

Environment = Literal["development", "test", "staging", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ContextMissing = Literal["RUNTIME_ERROR", "LOG_ERROR", "IGNORE_ERROR"]
TracingBackend = Literal["xray-sdk", "otel"]

DEFAULT_SAMPLING_RULES = Path(__file__).with_name("sampling-rules.json")


def _sampling_rules_file(path: Path) -> Path:
    """A readable X-Ray local sampling rules file (the error says what is wrong)."""
    LocalRules.from_file(path)  # SamplingRulesError is a ValueError
    return path


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip().lower() for part in value.split(",") if part.strip())
    return value


# Where ALLOWED_HOSTS is not set in development and test: the loopback names,
# and ``testserver``, the host Starlette's test client sends.
DEVELOPMENT_HOSTS = ("localhost", ".localhost", "127.0.0.1", "[::1]", "testserver")
_HOST_ENTRY = r"^(\.?[a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])$"


class TracingSelection(BaseSettings):
    """Which tracing implementation the process uses: the one setting read before the others.

    Each service's ``__main__`` imports the implementation first
    (:func:`servicekit.tracing.preload`), before the modules its settings live
    in; :class:`ServiceSettings` inherits the field, so both readings are the
    same one.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # Which implementation records the traces: the X-Ray SDK sending segments
    # to the X-Ray daemon (UDP 2000), or OpenTelemetry exporting OTLP/HTTP to
    # an ADOT collector. Both use X-Ray trace ids, the X-Amzn-Trace-Id header
    # and the sampling rules file below.
    tracing_backend: TracingBackend = Field(default="xray-sdk", validation_alias="TRACING_BACKEND")


class ServiceSettings(TracingSelection):
    """Configuration common to both services.

    Each service subclasses this with its own fields and defaults
    (``service_name`` and ``port`` at least). Values come from the process
    environment only; unknown variables are ignored.
    """

    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    service_name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    environment: Environment = "development"
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    log_level: Annotated[LogLevel, BeforeValidator(_upper)] = "INFO"

    # Graceful shutdown: readiness fails at once on SIGTERM, the server keeps
    # serving for the drain delay, then stops accepting connections and lets
    # in-flight requests finish for at most the grace timeout. The two together
    # must stay below the task definition's stopTimeout.
    shutdown_drain_seconds: float = Field(default=3.0, ge=0, le=60)
    shutdown_grace_seconds: float = Field(default=20.0, gt=0, le=110)

    # Limits at the HTTP edge (servicekit.edge): what one client may send, and
    # for how long it may hold a connection. The largest valid request of
    # either service is a few kilobytes; the ALB itself allows 64 KiB of headers.
    max_request_body_bytes: int = Field(default=65_536, ge=1024, le=64 * 2**20)
    max_request_header_bytes: int = Field(default=32_768, ge=1024, le=2**20)
    max_request_headers: int = Field(default=100, ge=10, le=1000)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # Longer than the ALB's 60 s idle timeout, as AWS recommends for targets,
    # so the load balancer, not the server, closes an idle connection (a server
    # closing first races the balancer's next request: a 502 for the client).
    http_keep_alive_seconds: int = Field(default=75, ge=1, le=4000)
    # Proxies in front of the service that append to X-Forwarded-For: the
    # client address is the right-most entry they did not write (1: the ALB).
    trusted_proxies: int = Field(default=1, ge=0, le=10)
    # The Host names the service answers for (comma-separated; ".example.com"
    # also takes its subdomains). Any other Host is a 400: a page whose domain
    # is rebound to the service's address cannot use it. Required outside
    # development and test (DEVELOPMENT_HOSTS there when unset).
    allowed_hosts: Annotated[
        tuple[Annotated[str, Field(pattern=_HOST_ENTRY, max_length=253)], ...],
        NoDecode,
        BeforeValidator(_comma_separated),
    ] = ()
    # /docs and /openapi.json: on in development and test unless set.
    api_docs_enabled: bool | None = None

    # X-Ray, under the SDK's standard variable names.
    tracing_enabled: bool = Field(
        default=True, validation_alias=AliasChoices("AWS_XRAY_SDK_ENABLED", "TRACING_ENABLED")
    )
    xray_daemon_address: str = Field(
        default="127.0.0.1:2000",
        validation_alias="AWS_XRAY_DAEMON_ADDRESS",
        pattern=r"^(tcp:\S+:\d+ udp:\S+:\d+|udp:\S+:\d+ tcp:\S+:\d+|\S+:\d+)$",
    )
    xray_context_missing: ContextMissing = Field(
        default="LOG_ERROR", validation_alias="AWS_XRAY_CONTEXT_MISSING"
    )
    xray_sampling_rules: Annotated[Path, AfterValidator(_sampling_rules_file)] = Field(
        default=DEFAULT_SAMPLING_RULES, validation_alias="XRAY_SAMPLING_RULES"
    )
    # Centralized sampling asks the daemon (TCP 2000), or on the OpenTelemetry
    # path the ADOT collector's awsproxy (same port), for the rules set in the
    # X-Ray console; the local rules file above is then the fallback.
    xray_centralized_sampling: bool = Field(
        default=False, validation_alias="XRAY_CENTRALIZED_SAMPLING"
    )
    # Whether an incoming X-Amzn-Trace-Id's sampling decision is followed. A
    # public entry point must not let clients force tracing (a cost lever);
    # a service reached only through another traced service follows it.
    xray_trust_incoming_sampling: bool = Field(
        default=False, validation_alias="XRAY_TRUST_INCOMING_SAMPLING"
    )

    otel_exporter_otlp_endpoint: str = Field(
        default="http://127.0.0.1:4318",
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        pattern=r"^https?://[^\s/]+(/\S*)?$",
    )
    # OpenTelemetry's batch span processor, under OpenTelemetry's own variable
    # names (read here, once, and passed to the SDK). Exported every second, as
    # the X-Ray daemon sends segments (a stopped task has less unsent), in
    # batches of at most 512 spans (OpenTelemetry's default): at a few thousand
    # sampled spans a second, a quarter as many POSTs as batches of 128, and
    # fewer wake-ups of the export thread (docs/performance.md). The queue
    # must hold a batch: OTEL_BSP_MAX_QUEUE_SIZE >= the batch size.
    otel_bsp_schedule_delay: int = Field(
        default=1000, ge=1, le=600_000, validation_alias="OTEL_BSP_SCHEDULE_DELAY"
    )
    otel_bsp_max_export_batch_size: int = Field(
        default=512, ge=1, le=65_536, validation_alias="OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
    )
    otel_bsp_max_queue_size: int = Field(
        default=2048, ge=1, le=1_048_576, validation_alias="OTEL_BSP_MAX_QUEUE_SIZE"
    )
    otel_bsp_export_timeout: int = Field(
        default=30_000, ge=1, le=600_000, validation_alias="OTEL_BSP_EXPORT_TIMEOUT"
    )

    # Application metrics (CloudWatch EMF lines on stdout, once a minute).
    metrics_enabled: bool = Field(default=True, validation_alias="METRICS_ENABLED")
    metrics_namespace: str = Field(
        default="sbcntr/local",
        validation_alias="METRICS_NAMESPACE",
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_./#:-]+$",
    )
    metrics_interval_seconds: float = Field(
        default=60, ge=1, le=3600, validation_alias="METRICS_INTERVAL_SECONDS"
    )

    # Set by the ECS agent in every task (servicekit.identity reads the task's
    # ARN and Availability Zone from it); unset elsewhere.
    ecs_container_metadata_uri_v4: str | None = Field(
        default=None, validation_alias="ECS_CONTAINER_METADATA_URI_V4", pattern=r"^https?://\S+$"
    )

    @model_validator(mode="after")
    def _check_batch_within_queue(self) -> ServiceSettings:
        if self.otel_bsp_max_export_batch_size > self.otel_bsp_max_queue_size:
            msg = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE must not exceed OTEL_BSP_MAX_QUEUE_SIZE"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _check_shutdown_budget(self) -> ServiceSettings:
        if self.shutdown_drain_seconds + self.shutdown_grace_seconds > 115:
            msg = (
                "SHUTDOWN_DRAIN_SECONDS + SHUTDOWN_GRACE_SECONDS must stay below the "
                "Fargate stopTimeout maximum of 120 s (with 5 s to spare)"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _check_allowed_hosts(self) -> ServiceSettings:
        if not self.allowed_hosts and not self.is_development:
            msg = (
                "ALLOWED_HOSTS is required outside development and test: the host names "
                "clients use for this service, comma-separated"
            )
            raise ValueError(msg)
        return self

    @property
    def hosts_allowed(self) -> tuple[str, ...]:
        """``ALLOWED_HOSTS``, or :data:`DEVELOPMENT_HOSTS` where it may be left unset."""
        return self.allowed_hosts or DEVELOPMENT_HOSTS

    @property
    def docs_enabled(self) -> bool:
        """Whether ``/docs`` and ``/openapi.json`` are served."""
        if self.api_docs_enabled is None:
            return self.is_development
        return self.api_docs_enabled

    @property
    def on_ecs(self) -> bool:
        """Whether this process runs in an ECS task (the agent set the metadata endpoint)."""
        return self.ecs_container_metadata_uri_v4 is not None

    @property
    def is_development(self) -> bool:
        """True where convenience defaults (such as default secrets) are acceptable."""
        return self.environment in ("development", "test")
