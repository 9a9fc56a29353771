"""The two database roles: the migration's, which owns the schema, and the service's, DML only.

``python -m backend migrate`` runs as the schema's owner (the role that
creates and alters the tables) and, in the same locked transaction as the
migrations, makes sure the service's role :data:`APP_ROLE` exists and may
read and write the application's tables and nothing else: no CREATE on the
database or the schema, no ownership, only SELECT on ``alembic_version``.
The grants are applied after every run, so a table added by a later
migration is granted in the release that adds it.

On RDS and Aurora the role is also granted ``rds_iam``: it then logs in only
with an IAM authentication token (docs/database-access.md).

Outside development the service checks, at start and in readiness, that the
user it connects as cannot change the schema (:func:`schema_rights`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

APP_ROLE = "sbcntr_app"
"""The PostgreSQL role the service connects as in AWS."""
SCHEMA = "public"

# Constants only: no value from outside reaches these statements.
_GRANTS = (
    f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
            GRANT rds_iam TO {APP_ROLE};
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO {APP_ROLE}', current_database());
        EXECUTE format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    END $$""",  # noqa: S608 - constants
    f"REVOKE CREATE ON SCHEMA {SCHEMA} FROM PUBLIC",
    f"GRANT USAGE ON SCHEMA {SCHEMA} TO {APP_ROLE}",
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {SCHEMA} TO {APP_ROLE}",
    f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {APP_ROLE}",
    f"REVOKE INSERT, UPDATE, DELETE ON TABLE {SCHEMA}.alembic_version FROM {APP_ROLE}",
)


def grant_app_role(conn: Connection) -> None:
    """Create :data:`APP_ROLE` when missing and grant it DML on every table; idempotent.

    PostgreSQL only; run by the migration, as the schema's owner.
    """
    for statement in _GRANTS:
        conn.exec_driver_sql(statement)


_RIGHTS = text(
    """
    SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb,
           has_database_privilege(current_database(), 'CREATE') AS create_schemas,
           has_schema_privilege(:schema, 'CREATE') AS create_tables,
           (SELECT string_agg(DISTINCT c.relname, ', ' ORDER BY c.relname)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
               AND pg_has_role(current_user, c.relowner, 'USAGE')) AS owns
      FROM pg_roles r WHERE r.rolname = current_user
    """
)


async def schema_rights(engine: AsyncEngine) -> list[str]:
    """What the connected user may do beyond DML (empty: nothing); PostgreSQL only."""
    async with engine.connect() as conn:
        row = (await conn.execute(_RIGHTS, {"schema": SCHEMA})).one()
    rights = []
    if row.rolsuper:
        rights.append("is a superuser")
    if row.rolcreaterole:
        rights.append("may create roles")
    if row.rolcreatedb:
        rights.append("may create databases")
    if row.create_schemas:
        rights.append("may create schemas")
    if row.create_tables:
        rights.append(f"may create tables in schema {SCHEMA}")
    if row.owns:
        rights.append(f"owns (may alter and drop) {row.owns}")
    return rights


class SchemaRightsError(Exception):
    """The service's database user can change the schema; the message says how and what to do."""


@dataclass
class RoleCheck:
    """Readiness check ``database_role``: the user must not be able to change the schema.

    Once passed it is not run again (a role's rights do not grow by themselves).
    """

    passed: bool = False

    async def __call__(self, engine: AsyncEngine) -> None:
        if self.passed:
            return
        rights = await schema_rights(engine)
        if rights:
            user = engine.url.username
            msg = (
                f"database user {user} can change the schema ({'; '.join(rights)}): "
                f"the service must connect as {APP_ROLE}, which `python -m backend migrate` "
                "grants DML only"
            )
            raise SchemaRightsError(msg)
        self.passed = True
