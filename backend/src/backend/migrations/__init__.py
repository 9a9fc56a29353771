"""Alembic migrations of the backend's database: ``env.py`` and ``versions/``.

Shipped inside the package, so the image that runs the service carries the
migrations of its own code; ``python -m backend migrate`` applies them.

:data:`REVISIONS` lists the revisions of ``versions/`` oldest first, so the
service can compare the database's revision with its own without importing
Alembic at start-up (a test keeps the two in agreement). Add a migration's id
here when you add the migration.
"""

REVISIONS: tuple[str, ...] = ("0001", "0002")
"""Every migration of this code, oldest first (the history is linear)."""

HEAD = REVISIONS[-1]
"""The revision this code's models match."""
