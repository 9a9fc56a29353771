"""List indexes: one index serves both the filter and the newest-first order.

``GET /v1/items?favorite=true`` is ``WHERE favorite = ? ORDER BY id DESC
LIMIT n``: with an index on ``(favorite, id)`` PostgreSQL reads the page in
order from the index instead of sorting every matching row (the same for
unread notifications). SQLite's indexes already end with the row id, so
there it changes nothing. The single-column indexes of 0001 are prefixes of
the new ones and go.

Additive for the code before it (indexes change no query's result), so it
runs while that code serves. On a large PostgreSQL table, build the index
with ``CREATE INDEX CONCURRENTLY`` in a migration of its own instead: see
docs/migrations.md.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 02:07:05
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_items_favorite_id", "items", ["favorite", "id"])
    op.drop_index("ix_items_favorite", table_name="items")
    op.create_index("ix_notifications_unread_id", "notifications", ["unread", "id"])
    op.drop_index("ix_notifications_unread", table_name="notifications")


def downgrade() -> None:
    op.create_index("ix_notifications_unread", "notifications", ["unread"])
    op.drop_index("ix_notifications_unread_id", table_name="notifications")
    op.create_index("ix_items_favorite", "items", ["favorite"])
    op.drop_index("ix_items_favorite_id", table_name="items")
