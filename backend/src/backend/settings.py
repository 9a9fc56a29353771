"""Backend configuration, from environment variables."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, SecretStr, model_validator
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from backend.connect import ConnectOptions, rds_iam_tokens_for, secret_credentials, verify_full
from servicekit.settings import ServiceSettings

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/backend.sqlite3"

# Async drivers by database: a plain ``postgresql://`` or ``sqlite://`` URL
# (as Aurora's console shows it) gets the driver this service ships.
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


class BackendSettings(ServiceSettings):
    """``DATABASE_URL`` picks the database: SQLite by default, PostgreSQL (Aurora) in AWS.

    Outside development a PostgreSQL database must be reached with verified
    TLS (``DATABASE_SSL_ROOT_CERT``, the CA bundle), and authenticated either
    by ``DATABASE_AUTH=iam`` (an RDS IAM token per connection: the service on
    ECS) or by ``DATABASE_PASSWORD`` (a secret), never by a password in the
    URL. ``python -m backend migrate`` on ECS connects as the schema's owner
    whose credentials the secret ``DATABASE_OWNER_CREDENTIALS_ARN`` holds
    (docs/database-access.md).
    """

    service_name: str = "backend"
    port: int = Field(default=8081, ge=0, le=65535)
    # Reached only through the frontend, whose sampling decision it follows
    # so that a sampled trace is whole.
    xray_trust_incoming_sampling: bool = Field(
        default=True, validation_alias="XRAY_TRUST_INCOMING_SAMPLING"
    )

    database_url: str = DEFAULT_DATABASE_URL
    database_password: SecretStr | None = None
    database_auth: Literal["password", "iam"] = "password"
    database_ssl_root_cert: FilePath | None = None
    aws_region: str | None = Field(default=None, validation_alias="AWS_REGION")
    # Read by `python -m backend migrate` only: the schema owner's credentials.
    database_owner_credentials_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:\S+$"
    )
    database_pool_size: int = Field(default=10, ge=1, le=100)

    # Fault injection for drills: refused unless FAULT_INJECTION_ENABLED is true.
    fault_injection_enabled: bool = False
    fault_latency_ms: int = Field(default=0, ge=0, le=60_000)
    fault_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_readiness_fail: bool = False

    @model_validator(mode="after")
    def _check_database(self) -> BackendSettings:
        url = self.database_url_object()
        postgresql = url.get_backend_name() == "postgresql"
        if not postgresql and (self.database_auth == "iam" or self.database_ssl_root_cert):
            msg = "DATABASE_AUTH=iam and DATABASE_SSL_ROOT_CERT need a PostgreSQL DATABASE_URL"
            raise ValueError(msg)
        if self.database_auth == "iam" and self.database_password is not None:
            msg = "DATABASE_PASSWORD must not be set with DATABASE_AUTH=iam (one credential)"
            raise ValueError(msg)
        if self.database_ssl_root_cert is not None:
            try:
                verify_full(self.database_ssl_root_cert)
            except ssl.SSLError as exc:
                msg = f"DATABASE_SSL_ROOT_CERT is not a PEM CA bundle: {exc}"
                raise ValueError(msg) from None
        if postgresql and not self.is_development:
            if make_url(self.database_url).password is not None:
                msg = (
                    "DATABASE_URL must not contain a password outside development: "
                    "use DATABASE_AUTH=iam, or DATABASE_PASSWORD (a secret)"
                )
                raise ValueError(msg)
            no_password = (
                self.database_password is None or not self.database_password.get_secret_value()
            )
            if self.database_auth == "password" and no_password:
                msg = (
                    "DATABASE_PASSWORD is required for a PostgreSQL DATABASE_URL "
                    "outside development (or DATABASE_AUTH=iam)"
                )
                raise ValueError(msg)
            if self.database_ssl_root_cert is None:
                msg = (
                    "DATABASE_SSL_ROOT_CERT (the database's CA bundle) is required for a "
                    "PostgreSQL DATABASE_URL outside development: the server's certificate "
                    "must be verified"
                )
                raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _check_faults(self) -> BackendSettings:
        configured = (
            self.fault_latency_ms != 0 or self.fault_error_rate != 0 or self.fault_readiness_fail
        )
        if configured and not self.fault_injection_enabled:
            msg = "FAULT_* variables are set but FAULT_INJECTION_ENABLED is not true"
            raise ValueError(msg)
        if self.fault_injection_enabled and not self.is_development:
            msg = (
                "FAULT_INJECTION_ENABLED is refused outside development and test "
                f"(ENVIRONMENT={self.environment})"
            )
            raise ValueError(msg)
        return self

    @property
    def database_is_postgresql(self) -> bool:
        return self.database_url_object().get_backend_name() == "postgresql"

    def migration_connection(self) -> tuple[URL, ConnectOptions]:
        """The URL and options ``python -m backend migrate`` connects with.

        With ``DATABASE_OWNER_CREDENTIALS_ARN`` (on ECS): as the user and with the
        password of that secret, read now, over the same verified TLS; without
        it: as the service does.
        """
        if self.database_owner_credentials_arn is None:
            return self.database_url_object(), self.connect_options()
        user, password = secret_credentials(self.database_owner_credentials_arn, self.aws_region)
        url = self.database_url_object().set(username=user, password=password)
        ca_bundle = self.database_ssl_root_cert
        return url, ConnectOptions(
            ssl_context=verify_full(ca_bundle) if ca_bundle is not None else None
        )

    def connect_options(self) -> ConnectOptions:
        """TLS and per-connection credentials for the engine (nothing for SQLite)."""
        if not self.database_is_postgresql:
            return ConnectOptions()
        tokens = None
        if self.database_auth == "iam":
            tokens = rds_iam_tokens_for(self.database_url_object(), self.aws_region)
        ca_bundle: Path | None = self.database_ssl_root_cert
        return ConnectOptions(
            password_provider=tokens,
            ssl_context=verify_full(ca_bundle) if ca_bundle is not None else None,
        )

    def database_url_object(self) -> URL:
        """``DATABASE_URL`` with its async driver and ``DATABASE_PASSWORD`` applied."""
        try:
            url = make_url(self.database_url)
        except ArgumentError as exc:
            msg = f"DATABASE_URL is not a database URL: {exc}"
            raise ValueError(msg) from None
        driver = _ASYNC_DRIVERS.get(url.drivername)
        if driver is not None:
            url = url.set(drivername=driver)
        if url.get_backend_name() not in _ASYNC_DRIVERS:
            backend = url.get_backend_name()
            msg = f"DATABASE_URL: unsupported database {backend!r} (sqlite or postgresql)"
            raise ValueError(msg)
        if self.database_password is not None:
            url = url.set(password=self.database_password.get_secret_value())
        return url
