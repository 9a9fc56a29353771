"""Demo data for development and test databases, never for staging or production.

Seed rows are recognisable: every seed item has the name :data:`SEED_NAME`,
and every seed notification says it is seed data. ``python -m backend migrate
--seed`` writes them once, inside the migration lock, and refuses to run
outside ``ENVIRONMENT=development`` or ``test``.
"""

from __future__ import annotations

from sqlalchemy import exists, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.models import Item, Notification

SEED_NAME = "seed"
"""The ``name`` of every seed item: ``WHERE name = 'seed'`` finds the demo data."""

SEED_ITEMS = [
    {"title": "Fargate", "name": SEED_NAME, "content": "Serverless compute for containers."},
    {"title": "FireLens", "name": SEED_NAME, "content": "Routes container logs with Fluent Bit."},
    {"title": "X-Ray", "name": SEED_NAME, "content": "Traces requests across services."},
]
SEED_NOTIFICATIONS = [
    {
        "title": "Welcome",
        "description": "Seed data: this database was seeded for development.",
        "category": "information",
    },
    {
        "title": "Maintenance",
        "description": "Seed data: tasks may be replaced at any time.",
        "category": "alert",
    },
]


async def is_seeded(conn: AsyncConnection) -> bool:
    """Whether the seed rows were written to this database."""
    return bool(await conn.scalar(select(exists().where(Item.name == SEED_NAME))))


async def seed(conn: AsyncConnection) -> bool:
    """Write the seed rows unless the database has them; True when written.

    Runs in the caller's transaction, which must hold the migration lock, so
    that two runners cannot both find the database unseeded.
    """
    if await is_seeded(conn):
        return False
    await conn.execute(insert(Item), SEED_ITEMS)
    await conn.execute(insert(Notification), SEED_NOTIFICATIONS)
    return True
