"""Request and response bodies of the API.

Input models forbid unknown fields and take booleans strictly, so a typo or a
wrong type is a 422 that names the field, never a silent default.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from backend.models import CATEGORY_MAX, CONTENT_MAX, NAME_MAX, TITLE_MAX

# PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
_NO_NUL = r"^[^\x00]*$"
# A title or category is not only whitespace (it is stripped); said as a
# pattern, so that the OpenAPI schema describes exactly what is accepted.
_VISIBLE_NO_NUL = r"^[^\x00]*[^\s\x00][^\x00]*$"


def _at_most(limit: int) -> BeforeValidator:
    """The documented maximum on the text as sent: stripping comes after, so a value
    with surrounding spaces is refused as the schema says rather than accepted."""

    def check(value: object) -> object:
        if isinstance(value, str) and len(value) > limit:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": limit},
            )
        return value

    return BeforeValidator(check)


Title = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=TITLE_MAX, pattern=_VISIBLE_NO_NUL
    ),
    _at_most(TITLE_MAX),  # listed last: runs first (pydantic applies metadata outward)
]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=NAME_MAX, pattern=_NO_NUL),
    _at_most(NAME_MAX),
]
Content = Annotated[str, StringConstraints(max_length=CONTENT_MAX, pattern=_NO_NUL)]
Category = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=CATEGORY_MAX, pattern=_VISIBLE_NO_NUL
    ),
    _at_most(CATEGORY_MAX),
]

MAX_ID = 2_147_483_647


def _as_utc(value: datetime) -> datetime:
    # SQLite keeps no time zone; every time the backend stores is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
ItemId = Annotated[int, Field(gt=0, le=MAX_ID)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemCreate(_Input):
    title: Title
    name: Name = ""
    content: Content = ""


class NotificationCreate(_Input):
    title: Title
    description: Content = ""
    category: Category = "information"


class FavoriteUpdate(_Input):
    favorite: StrictBool


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    name: str
    content: str
    favorite: bool
    created_at: UtcDatetime


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str
    category: str
    unread: bool
    created_at: UtcDatetime


class Page(BaseModel):
    """One page of a list: ``total`` is the count of the whole (filtered) list."""

    total: int
    limit: int
    offset: int


class ItemList(Page):
    data: list[ItemOut]


class NotificationList(Page):
    data: list[NotificationOut]


class UnreadCount(BaseModel):
    unread: int


class MarkedRead(BaseModel):
    updated: int


class HelloWorld(BaseModel):
    data: str
