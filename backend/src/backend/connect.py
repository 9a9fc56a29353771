"""How the backend opens a PostgreSQL connection: credentials and verified TLS.

Two ways to authenticate (``DATABASE_AUTH``):

* ``password``: the password in ``DATABASE_PASSWORD`` (development, compose,
  and the migration task on AWS).
* ``iam``: an RDS IAM authentication token, made for every new connection by
  :class:`RdsIamTokens` from the task role's credentials. A token is valid
  for 15 minutes and is checked only when a connection starts, so the pool
  recycles connections after :data:`IAM_POOL_RECYCLE_SECONDS`, well within
  that: a revoked ``rds-db:connect`` permission takes effect within that time.

With ``DATABASE_SSL_ROOT_CERT`` every connection is TLS with the server's
certificate verified against that CA bundle and its host name checked
(libpq's ``sslmode=verify-full``).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

PasswordProvider = Callable[[], str]
"""Returns the password for the next new connection (called once per connection)."""

IAM_TOKEN_SECONDS = 900
"""How long an RDS IAM authentication token is valid (fixed by RDS)."""
IAM_POOL_RECYCLE_SECONDS = 600
"""Connections are replaced after this long, before the token that opened them expires."""


class RdsIamTokens:
    """A :data:`PasswordProvider` of RDS IAM authentication tokens for one database user.

    The token is a SigV4-presigned ``connect`` request made locally (no call to
    AWS) with the task role's credentials, which botocore refreshes; the role
    needs ``rds-db:connect`` on ``dbuser:<resource id>/<user>`` (Amazon RDS
    User Guide, "Creating and using an IAM policy for IAM database access").
    """

    def __init__(self, host: str, port: int, user: str, region: str | None = None) -> None:
        import botocore.session  # noqa: PLC0415 - only when IAM authentication is configured

        self.host, self.port, self.user = host, port, user
        self._client = botocore.session.get_session().create_client("rds", region_name=region)

    def __call__(self) -> str:
        token: str = self._client.generate_db_auth_token(self.host, self.port, self.user)
        return token


def verify_full(ca_bundle: Path) -> ssl.SSLContext:
    """A client TLS context that trusts only ``ca_bundle`` and checks the server's host name."""
    context = ssl.create_default_context(cafile=str(ca_bundle))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True)
class ConnectOptions:
    """What every new connection of an engine gets besides its URL."""

    password_provider: PasswordProvider | None = None
    ssl_context: ssl.SSLContext | None = None

    @property
    def pool_recycle(self) -> int:
        """Seconds after which the pool replaces a connection (-1: never)."""
        return IAM_POOL_RECYCLE_SECONDS if self.password_provider is not None else -1

    def install(self, engine: Engine) -> None:
        """Apply these options to each new connection of ``engine`` (SQLAlchemy's do_connect)."""
        if self.password_provider is None and self.ssl_context is None:
            return

        def _connect_params(_dialect: Any, _record: Any, _args: Any, params: Any) -> None:
            if self.password_provider is not None:
                params["password"] = self.password_provider()
            if self.ssl_context is not None:
                params["ssl"] = self.ssl_context

        event.listen(engine, "do_connect", _connect_params)


def rds_iam_tokens_for(url: URL, region: str | None) -> RdsIamTokens:
    """The token provider for the user, host and port of ``url``."""
    if not url.host or not url.username:
        msg = "DATABASE_AUTH=iam needs a host and a user in DATABASE_URL"
        raise ValueError(msg)
    return RdsIamTokens(url.host, url.port or 5432, url.username, region)


def secret_credentials(secret_arn: str, region: str | None = None) -> tuple[str, str]:
    """The ``username`` and ``password`` of a Secrets Manager secret (JSON), read now.

    The migration task reads the schema owner's credentials this way, with its
    own task role (``secretsmanager:GetSecretValue`` on the secret, and
    ``kms:Decrypt`` through Secrets Manager for its customer-managed key:
    AWS Secrets Manager API Reference, "GetSecretValue"), so that no service
    task holds them.
    """
    import json  # noqa: PLC0415 - only in the migration task

    import botocore.session  # noqa: PLC0415

    client = botocore.session.get_session().create_client("secretsmanager", region_name=region)
    value = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
    return str(value["username"]), str(value["password"])
