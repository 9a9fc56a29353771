"""Backend settings: database URL handling and the secrets rule."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from backend.settings import BackendSettings


def test_defaults_work_without_any_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "PORT", "ENVIRONMENT", "DATABASE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    settings = BackendSettings()
    assert settings.port == 8081
    assert settings.host == "127.0.0.1"
    assert settings.database_url_object().drivername == "sqlite+aiosqlite"


def test_reads_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("AWS_XRAY_SDK_ENABLED", "false")
    settings = BackendSettings()
    assert (settings.port, settings.log_level, settings.tracing_enabled) == (9000, "DEBUG", False)


def test_plain_urls_get_the_async_driver_and_the_password() -> None:
    settings = BackendSettings(
        database_url="postgresql://app@db.example:5432/sbcntr",
        database_password=SecretStr("s3cret"),
        environment="production",
        allowed_hosts="backend.internal",
    )
    url = settings.database_url_object()
    assert url.drivername == "postgresql+asyncpg"
    assert url.password == "s3cret"
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())


def test_postgres_outside_development_needs_the_password_secret() -> None:
    with pytest.raises(ValidationError, match="DATABASE_PASSWORD is required"):
        BackendSettings(
            database_url="postgresql://app@db:5432/x",
            environment="production",
            allowed_hosts="backend.internal",
        )


def test_password_in_url_is_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="must not contain a password"):
        BackendSettings(
            database_url="postgresql://app:pw@db:5432/x",
            database_password=SecretStr("pw"),
            environment="staging",
            allowed_hosts="backend.internal",
        )


def test_development_accepts_a_url_with_password() -> None:
    settings = BackendSettings(database_url="postgresql://app:pw@db:5432/x")
    assert settings.database_url_object().password == "pw"


@pytest.mark.parametrize("url", ["mysql://x@y/z", "not a url", "http://example.com"])
def test_unsupported_or_invalid_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        BackendSettings(database_url=url)


def test_shutdown_budget_must_fit_the_fargate_stop_timeout() -> None:
    with pytest.raises(ValidationError, match="stopTimeout"):
        BackendSettings(shutdown_drain_seconds=30, shutdown_grace_seconds=100)
