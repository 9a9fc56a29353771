"""Database access on the real PostgreSQL: the two roles, per-connection credentials, verified TLS.

The suite's server (tests.support.PostgresServer) accepts TLS with a
certificate for 127.0.0.1 from a self-made CA, trusts every role except the
members of ``password_login`` (scram-sha-256), and lets ``app``, a
superuser, run the migrations, as the schema's owner does in AWS.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from backend.app import create_app
from backend.connect import IAM_POOL_RECYCLE_SECONDS, ConnectOptions, verify_full
from backend.database import create_engine, ping
from backend.roles import APP_ROLE, SchemaRightsError
from backend.settings import BackendSettings
from tests.backend.conftest import migrate
from tests.backend.test_migrations import run_cli
from tests.support import (
    PASSWORD_LOGIN_GROUP,
    PostgresServer,
    SelfMadeCa,
    base_env,
    free_port,
)
from tests.tools.deploy_support import aws_env, moto_server

MOTO_CLIENT = {
    "region_name": "ap-northeast-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}
__all__ = ["moto_server"]  # the fixture


def as_user(database_url: str, user: str, host: str = "127.0.0.1") -> str:
    return make_url(database_url).set(username=user, host=host).render_as_string(False)


def production(database_url: str, ca_file: Path, **settings: Any) -> BackendSettings:
    """The settings of the service on ECS: production, verified TLS, no tracing.

    With password authentication the password is a placeholder: the suite's
    server trusts the role.
    """
    if settings.get("database_auth") != "iam":
        settings.setdefault("database_password", SecretStr("unused-by-trust-auth"))
    return BackendSettings(
        database_url=database_url,
        environment="production",
        allowed_hosts="testserver",  # the Host header of Starlette's test client
        database_ssl_root_cert=ca_file,
        tracing_enabled=False,
        **settings,
    )


def sql(database_url: str, statement: str, user: str = "app", password: str | None = None) -> Any:
    """Run one statement as ``user`` over plain TCP (trust, or ``password``); its result."""
    url = make_url(database_url)

    async def run() -> Any:
        conn = await asyncpg.connect(
            host=url.host,
            port=url.port,
            user=user,
            password=password,
            database=url.database,
            ssl=False,
        )
        try:
            return await conn.fetch(statement)
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def migrated(postgres: PostgresServer) -> str:
    """A fresh database migrated and seeded by ``app`` (the schema's owner)."""
    database_url = postgres.new_database()
    migrate(database_url)
    return database_url


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE intruder (id int)",
        "DROP TABLE items",
        "ALTER TABLE items ADD COLUMN extra text",
        "CREATE INDEX intruder ON items (title)",
        "TRUNCATE items",
        "CREATE SCHEMA intruder",
        "UPDATE alembic_version SET version_num = '9999'",
    ],
)
def test_the_app_role_cannot_change_the_schema(migrated: str, statement: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        sql(migrated, statement, user=APP_ROLE)


def test_the_app_role_reads_and_writes_the_tables_and_migrating_again_keeps_it(
    migrated: str,
) -> None:
    migrate(migrated, seed=False)  # idempotent: the role exists, the grants are applied again
    sql(
        migrated,
        "INSERT INTO items (title, name, content, favorite, created_at)"
        " VALUES ('t', 'n', 'c', false, now())",
        APP_ROLE,
    )
    sql(migrated, "UPDATE items SET content = 'changed' WHERE title = 't'", APP_ROLE)
    sql(
        migrated,
        "INSERT INTO notifications (title, description, category, unread, created_at)"
        " VALUES ('n', 'd', 'information', true, now())",
        APP_ROLE,
    )
    sql(migrated, "DELETE FROM items WHERE title = 't'", APP_ROLE)
    assert sql(migrated, "SELECT version_num FROM alembic_version", APP_ROLE)
    role = sql(
        migrated,
        f"SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = '{APP_ROLE}'",
    )
    assert tuple(role[0]) == (False, False, False)


def test_production_service_as_the_app_role_serves_over_verified_tls(
    migrated: str, postgres: PostgresServer
) -> None:
    settings = production(as_user(migrated, APP_ROLE), postgres.ca_file)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database_role"] == "ok"
        assert client.post("/v1/items", json={"title": "as app role"}).status_code == 201
        engine = client.app.state.engine  # type: ignore[attr-defined]

        async def tls_in_use() -> Any:
            async with engine.connect() as conn:
                return (
                    await conn.exec_driver_sql(
                        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                    )
                ).one()

        in_use = client.portal.call(tls_in_use)  # type: ignore[union-attr]
        assert in_use[0] is True
        assert in_use[1] in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize(
    ("grant", "reason"),
    [
        (None, "is a superuser"),  # the schema's owner, as the service connected before
        ("GRANT CREATE ON SCHEMA public TO {role}", "may create tables in schema public"),
        ("ALTER TABLE items OWNER TO {role}", "owns (may alter and drop) items"),
    ],
)
def test_production_service_refuses_to_start_with_a_user_that_can_change_the_schema(
    postgres: PostgresServer, grant: str | None, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    database_url = postgres.new_database()
    migrate(database_url)
    user = "app"
    if grant is not None:
        user = f"ddl_{postgres.databases}"
        sql(database_url, f"CREATE ROLE {user} LOGIN IN ROLE {APP_ROLE}")
        sql(database_url, grant.format(role=user))
    app = create_app(production(as_user(database_url, user), postgres.ca_file))
    with pytest.raises(SchemaRightsError, match=re.escape(reason)), TestClient(app):
        pass
    assert "database user can change the schema" in capsys.readouterr().out

    # Development keeps the simple setup: one user for migrations and service.
    development = BackendSettings(database_url=as_user(database_url, user), tracing_enabled=False)
    with TestClient(create_app(development)) as client:
        assert client.get("/readyz").status_code == 200


class ChangingPassword:
    """A stand-in token provider: the password of the moment, counted per new connection."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.password


def test_a_new_password_is_picked_up_without_restart(
    migrated: str, postgres: PostgresServer
) -> None:
    """As with an IAM token: each new connection asks the provider; none is cached."""
    user = f"rotating_{postgres.databases}"
    sql(
        migrated,
        f"CREATE ROLE {user} LOGIN PASSWORD 'first' IN ROLE {APP_ROLE}, {PASSWORD_LOGIN_GROUP}",
    )
    tokens = ChangingPassword("first")
    settings = production(as_user(migrated, user), postgres.ca_file, database_auth="iam")
    options = ConnectOptions(password_provider=tokens, ssl_context=verify_full(postgres.ca_file))
    with TestClient(create_app(settings, connect_options=options)) as client:
        assert client.app.state.engine.pool._recycle == IAM_POOL_RECYCLE_SECONDS  # type: ignore[attr-defined]
        assert client.get("/v1/items").status_code == 200
        first_calls = tokens.calls
        assert first_calls >= 1

        # Rotation: the server takes only the new password, the old connections end.
        sql(migrated, f"ALTER ROLE {user} PASSWORD 'second'")
        sql(
            migrated,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}'",
        )
        with pytest.raises(asyncpg.InvalidPasswordError):
            sql(migrated, "SELECT 1", user=user, password="first")
        tokens.password = "second"

        for _ in itertools.repeat(None, 3):
            assert client.get("/v1/items").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert tokens.calls > first_calls


def test_tls_success_then_wrong_ca_and_wrong_host_fail_clearly(
    migrated: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    other_ca = SelfMadeCa.create(tmp_path, "not-the-servers-ca").cert_file
    cases = [
        (migrated, postgres.ca_file, None),
        (migrated, other_ca, "certificate verify failed: unable to get local issuer certificate"),
        (
            as_user(migrated, "app", host="localhost"),
            postgres.ca_file,
            "Hostname mismatch, certificate is not valid for 'localhost'",
        ),
    ]

    async def connect(url: str, ca: Path) -> None:
        engine = create_engine(
            BackendSettings(database_url=url).database_url_object(),
            1,
            options=ConnectOptions(ssl_context=verify_full(ca)),
        )
        try:
            await ping(engine)
        finally:
            await engine.dispose()

    for url, ca, error in cases:
        if error is None:
            asyncio.run(connect(url, ca))
            continue
        with pytest.raises(ssl.SSLCertVerificationError, match=error):
            asyncio.run(connect(url, ca))


def test_readiness_names_the_certificate_failure(migrated: str, tmp_path: Path) -> None:
    other_ca = SelfMadeCa.create(tmp_path, "not-the-servers-ca").cert_file
    settings = production(as_user(migrated, APP_ROLE), other_ca)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "certificate verify failed" in ready.json()["checks"]["database"]


def test_the_migration_task_connects_as_the_owner_named_by_its_secret(
    postgres: PostgresServer, tmp_path: Path, moto_server: str
) -> None:
    """As ``sbcntrctl deploy migrate`` runs it on ECS: the task definition's service settings
    (IAM authentication as the app role, verified TLS) plus the secret's ARN; the migration
    reads the owner's credentials from Secrets Manager and migrates as the owner.
    """
    database_url = postgres.new_database()
    owner = f"owner_{postgres.databases}"  # like RDS's master user: CREATEROLE, not superuser
    name = make_url(database_url).database
    sql(
        database_url,
        f"CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD 'owner-pw' IN ROLE {PASSWORD_LOGIN_GROUP}",
    )
    sql(database_url, f"ALTER DATABASE {name} OWNER TO {owner}")
    secrets = boto3.client("secretsmanager", endpoint_url=moto_server, **MOTO_CLIENT)
    arn = secrets.create_secret(
        Name="sbcntr/dev/database",
        SecretString=json.dumps({"username": owner, "password": "owner-pw"}),
    )["ARN"]

    status, lines = run_cli(
        tmp_path,
        as_user(database_url, APP_ROLE),
        "migrate",
        ENVIRONMENT="production",
        ALLOWED_HOSTS="backend.internal",
        DATABASE_AUTH="iam",
        DATABASE_SSL_ROOT_CERT=str(postgres.ca_file),
        DATABASE_OWNER_CREDENTIALS_ARN=arn,
        **aws_env(moto_server),
    )
    assert status == 0, lines[-1]
    assert lines[-1]["event"] == "database migrated"
    assert owner in lines[-1]["database"]
    assert "owner-pw" not in json.dumps(lines)
    owners = sql(
        database_url, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
    )
    assert [row[0] for row in owners] == [owner]
    assert sql(database_url, "SELECT count(*) FROM items", user=APP_ROLE)[0][0] == 0


def test_the_service_process_exits_when_its_user_can_change_the_schema(
    migrated: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    """The real ``python -m backend``, as ECS starts it: it stops before serving."""
    env = base_env(
        DATABASE_URL=migrated,
        ENVIRONMENT="production",
        ALLOWED_HOSTS="backend.internal",
        DATABASE_PASSWORD="unused-by-trust-auth",
        DATABASE_SSL_ROOT_CERT=str(postgres.ca_file),
        AWS_XRAY_SDK_ENABLED="false",
        PORT=str(free_port()),
    )
    result = subprocess.run(
        [sys.executable, "-m", "backend"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr[-2000:]  # start-up failed (servicekit.runner)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    refused = [line for line in lines if line["event"] == "database user can change the schema"]
    assert refused, result.stdout[-2000:]
    assert refused[0]["level"] == "critical"
    assert "is a superuser" in refused[0]["reason"]
    assert not any(line["event"] == "database ready" for line in lines)
