"""Database tables (SQLAlchemy 2 declarative)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TITLE_MAX = 100
NAME_MAX = 50
CONTENT_MAX = 1000
CATEGORY_MAX = 30


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    # The list is "newest first, optionally only favourites": one index serves
    # both the filter and the order (migration 0002).
    __table_args__ = (Index("ix_items_favorite_id", "favorite", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    name: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    content: Mapped[str] = mapped_column(String(CONTENT_MAX), default="")
    favorite: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_unread_id", "unread", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    description: Mapped[str] = mapped_column(String(CONTENT_MAX), default="")
    category: Mapped[str] = mapped_column(String(CATEGORY_MAX), default="information")
    unread: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
