"""Frontend configuration, from environment variables."""

from __future__ import annotations

from pydantic import Field, HttpUrl, model_validator

from servicekit.settings import ServiceSettings


class FrontendSettings(ServiceSettings):
    """How the frontend reaches the backend, and how patiently.

    ``BACKEND_TIMEOUT_SECONDS`` bounds each backend call including its
    retries, so a page answers within it even when the backend hangs.
    """

    service_name: str = "frontend"
    port: int = Field(default=8080, ge=0, le=65535)

    backend_url: HttpUrl = HttpUrl("http://127.0.0.1:8081")
    backend_connect_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    backend_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    backend_max_connections: int = Field(default=100, ge=1, le=1000)
    backend_keepalive_seconds: float = Field(default=15.0, ge=0, le=300)
    backend_get_retries: int = Field(default=2, ge=0, le=5)
    backend_retry_backoff_seconds: float = Field(default=0.05, ge=0, le=2)
    # The region ECS sets in every task: page footers link each request's
    # trace to the X-Ray console in it (only when running on ECS).
    aws_region: str | None = Field(
        default=None, validation_alias="AWS_REGION", pattern=r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"
    )

    @model_validator(mode="after")
    def _check_timeouts(self) -> FrontendSettings:
        if self.backend_connect_timeout_seconds > self.backend_timeout_seconds:
            msg = "BACKEND_CONNECT_TIMEOUT_SECONDS must not exceed BACKEND_TIMEOUT_SECONDS"
            raise ValueError(msg)
        return self
