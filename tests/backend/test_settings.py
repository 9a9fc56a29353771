"""Backend settings: database URL handling and the secrets rule."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr, ValidationError

from backend.connect import IAM_POOL_RECYCLE_SECONDS, IAM_TOKEN_SECONDS, RdsIamTokens
from backend.settings import BackendSettings
from tests.support import SelfMadeCa


@pytest.fixture
def ca_bundle(tmp_path: Path) -> Path:
    """A CA bundle file: one self-made CA certificate."""
    return SelfMadeCa.create(tmp_path, "bundle").cert_file


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


def test_plain_urls_get_the_async_driver_and_the_password(ca_bundle: Path) -> None:
    settings = BackendSettings(
        database_url="postgresql://app@db.example:5432/sbcntr",
        database_password=SecretStr("s3cret"),
        database_ssl_root_cert=ca_bundle,
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


def test_postgres_outside_development_needs_the_ca_bundle() -> None:
    with pytest.raises(ValidationError, match=r"DATABASE_SSL_ROOT_CERT .* is required"):
        BackendSettings(
            database_url="postgresql://sbcntr_app@db:5432/x",
            database_auth="iam",
            environment="production",
            allowed_hosts="backend.internal",
        )


def test_a_missing_ca_bundle_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="database_ssl_root_cert"):
        BackendSettings(
            database_url="postgresql://app@db:5432/x",
            database_ssl_root_cert=tmp_path / "absent.pem",
        )


def test_a_file_that_is_no_ca_bundle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bundle.pem"
    path.write_text("not a certificate\n")
    with pytest.raises(ValidationError, match="DATABASE_SSL_ROOT_CERT is not a PEM CA bundle"):
        BackendSettings(database_url="postgresql://app@db:5432/x", database_ssl_root_cert=path)


def test_iam_authentication_takes_no_password(ca_bundle: Path) -> None:
    with pytest.raises(ValidationError, match="DATABASE_PASSWORD must not be set"):
        BackendSettings(
            database_url="postgresql://sbcntr_app@db:5432/x",
            database_auth="iam",
            database_password=SecretStr("pw"),
            database_ssl_root_cert=ca_bundle,
            environment="production",
            allowed_hosts="backend.internal",
        )


def test_iam_authentication_and_tls_need_postgresql(ca_bundle: Path) -> None:
    with pytest.raises(ValidationError, match="need a PostgreSQL DATABASE_URL"):
        BackendSettings(database_auth="iam")
    with pytest.raises(ValidationError, match="need a PostgreSQL DATABASE_URL"):
        BackendSettings(database_ssl_root_cert=ca_bundle)


def test_iam_authentication_makes_an_rds_token_per_connection(
    ca_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is RDS's presigned ``connect`` for the URL's user, host and port.

    Amazon RDS User Guide, "Connecting to your DB instance using IAM
    authentication and the AWS SDK for Python (Boto3)": ``generate_db_auth_token``
    (DBHostname, Port, DBUsername); the token is valid for 15 minutes
    ("IAM database authentication for MariaDB, MySQL, and PostgreSQL").
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    settings = BackendSettings(
        database_url="postgresql://sbcntr_app@db.example:5432/sbcntr",
        database_auth="iam",
        database_ssl_root_cert=ca_bundle,
        aws_region="ap-northeast-1",
        environment="production",
        allowed_hosts="backend.internal",
    )
    options = settings.connect_options()
    assert isinstance(options.password_provider, RdsIamTokens)
    assert options.ssl_context is not None
    assert options.ssl_context.check_hostname
    assert 0 < options.pool_recycle < IAM_TOKEN_SECONDS == 900
    assert options.pool_recycle == IAM_POOL_RECYCLE_SECONDS

    token = options.password_provider()
    where, _, query = token.partition("?")
    assert where == "db.example:5432/"
    fields = parse_qs(query)
    assert fields["Action"] == ["connect"]
    assert fields["DBUser"] == ["sbcntr_app"]
    assert fields["X-Amz-Expires"] == [str(IAM_TOKEN_SECONDS)]
    assert "/ap-northeast-1/rds-db/aws4_request" in fields["X-Amz-Credential"][0]
    assert urlsplit(f"https://{token}").hostname == "db.example"
