"""Alembic's environment: run the migrations on the connection passed in.

Alembic runs this module on each command. The connection is opened, locked
and committed by :mod:`backend.migrate` (``python -m backend migrate``), which
passes it as ``config.attributes["connection"]``: every schema change then
happens inside that one locked transaction.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from backend.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    msg = "run migrations with `python -m backend migrate`, which holds the migration lock"
    raise RuntimeError(msg)

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters tables by copying them ("batch" mode); PostgreSQL alters in place.
    render_as_batch=True,
    compare_type=True,
    # Both databases roll DDL back with the transaction (Alembic assumes SQLite does not).
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
