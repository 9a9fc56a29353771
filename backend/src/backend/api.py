"""The ``/v1`` routes: hello world, items and notifications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from sqlalchemy import func, select, true, update

from backend.database import SessionDep
from backend.models import Item, Notification
from backend.schemas import (
    MAX_ID,
    FavoriteUpdate,
    HelloWorld,
    ItemCreate,
    ItemList,
    ItemOut,
    MarkedRead,
    NotificationCreate,
    NotificationList,
    NotificationOut,
    UnreadCount,
)
from servicekit.errors import error_responses

router = APIRouter(prefix="/v1")
NOT_FOUND = error_responses(404)

IdPath = Annotated[int, Path(gt=0, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="how many to skip (newest first)")]


@router.get("/helloworld", tags=["hello"])
async def helloworld() -> HelloWorld:
    return HelloWorld(data="Hello world")


@router.get("/items", tags=["items"])
async def list_items(
    session: SessionDep, favorite: bool | None = None, limit: Limit = 100, offset: Offset = 0
) -> ItemList:
    """Newest first, one page: ``limit`` items after ``offset``; ``total`` counts them all.

    ``favorite`` filters on the flag when given (the total too).
    """
    condition = true() if favorite is None else Item.favorite == favorite
    query = select(Item).where(condition).order_by(Item.id.desc()).limit(limit).offset(offset)
    total = select(func.count()).select_from(Item).where(condition)
    items = (await session.scalars(query)).all()
    return ItemList(
        data=[ItemOut.model_validate(item) for item in items],
        total=await session.scalar(total) or 0,
        limit=limit,
        offset=offset,
    )


@router.post("/items", status_code=status.HTTP_201_CREATED, tags=["items"])
async def create_item(body: ItemCreate, session: SessionDep, response: Response) -> ItemOut:
    item = Item(title=body.title, name=body.name, content=body.content, favorite=False)
    async with session.begin():
        session.add(item)
    response.headers["Location"] = f"{router.prefix}/items/{item.id}"
    return ItemOut.model_validate(item)


@router.get("/items/{item_id}", tags=["items"], responses=NOT_FOUND)
async def get_item(item_id: IdPath, session: SessionDep) -> ItemOut:
    item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"item {item_id} not found")
    return ItemOut.model_validate(item)


@router.put("/items/{item_id}/favorite", tags=["items"], responses=NOT_FOUND)
async def set_favorite(item_id: IdPath, body: FavoriteUpdate, session: SessionDep) -> ItemOut:
    """Mark (``{"favorite": true}``) or unmark (``false``) an item; idempotent."""
    async with session.begin():
        item = await session.get(Item, item_id, with_for_update=True)
        if item is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"item {item_id} not found")
        item.favorite = body.favorite
    return ItemOut.model_validate(item)


@router.get("/notifications", tags=["notifications"])
async def list_notifications(
    session: SessionDep, unread: bool | None = None, limit: Limit = 100, offset: Offset = 0
) -> NotificationList:
    """Newest first, one page: ``limit`` after ``offset``; ``total`` counts them all.

    ``unread`` filters on the flag when given (the total too).
    """
    condition = true() if unread is None else Notification.unread == unread
    query = (
        select(Notification)
        .where(condition)
        .order_by(Notification.id.desc())
        .limit(limit)
        .offset(offset)
    )
    total = select(func.count()).select_from(Notification).where(condition)
    notifications = (await session.scalars(query)).all()
    return NotificationList(
        data=[NotificationOut.model_validate(n) for n in notifications],
        total=await session.scalar(total) or 0,
        limit=limit,
        offset=offset,
    )


@router.post("/notifications", status_code=status.HTTP_201_CREATED, tags=["notifications"])
async def create_notification(
    body: NotificationCreate, session: SessionDep, response: Response
) -> NotificationOut:
    """Create an unread notification (what a job or another service posts for the users)."""
    notification = Notification(
        title=body.title, description=body.description, category=body.category, unread=True
    )
    async with session.begin():
        session.add(notification)
    response.headers["Location"] = f"{router.prefix}/notifications/{notification.id}"
    return NotificationOut.model_validate(notification)


@router.get("/notifications/count", tags=["notifications"])
async def unread_count(session: SessionDep) -> UnreadCount:
    query = select(func.count()).select_from(Notification).where(Notification.unread.is_(True))
    return UnreadCount(unread=await session.scalar(query) or 0)


@router.put("/notifications/read", tags=["notifications"])
async def mark_all_read(session: SessionDep) -> MarkedRead:
    """Mark every unread notification as read; returns how many changed."""
    async with session.begin():
        result = await session.execute(
            update(Notification).where(Notification.unread.is_(True)).values(unread=False)
        )
    return MarkedRead(updated=result.rowcount)  # type: ignore[attr-defined]


@router.put("/notifications/{notification_id}/read", tags=["notifications"], responses=NOT_FOUND)
async def mark_read(notification_id: IdPath, session: SessionDep) -> NotificationOut:
    """Mark one notification as read; idempotent."""
    async with session.begin():
        notification = await session.get(Notification, notification_id, with_for_update=True)
        if notification is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"notification {notification_id} not found"
            )
        notification.unread = False
    return NotificationOut.model_validate(notification)
