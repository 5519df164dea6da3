"""Shared API models and types: the page envelope, bounded ids, clean text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from cloud.domain import formats

T = TypeVar("T", bound=BaseModel)

BIGINT_MAX = 2**63 - 1


def clean(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot hold lone surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def text(min_length: int = 0, max_length: int = 200) -> Any:
    return Annotated[
        str,
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(clean),
    ]


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_only(value: Any) -> Any:
    """Dates and times as ISO 8601 text only: pydantic would also take a number (a Unix time),
    which a client sends only by mistake."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        return value
    raise ValueError("must be an ISO 8601 date or date-time string")


IsoDate = Annotated[date, BeforeValidator(iso_only)]
IsoDateTime = Annotated[datetime, BeforeValidator(iso_only)]

Name = text(1, 200)
SchoolId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
]
IdPath = Annotated[int, Path(ge=1, le=BIGINT_MAX)]

# One rule per value (cloud/domain/formats.py, shared with tools/ and the importer). The JSON
# schema shows the rule; the validator gives the one-line message.
PublicUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=formats.URL_MAX,
        description="https://host/... or a path we host starting with /media/",
    ),
    AfterValidator(formats.check_public_url),
]
CardUid = Annotated[
    str,
    Field(
        max_length=64,
        description="the card UID as read: 4, 7 or 10 bytes of hex (ISO 14443A), ':' or '-'"
        " between digits allowed",
        examples=["04A2B3C4", "04:A2:B3:C4:5D:6E:7F"],
    ),
    AfterValidator(formats.card_uid_hex),
]
ClaimToken = Annotated[
    str,
    Field(max_length=256, json_schema_extra={"pattern": formats.CLAIM_TOKEN_PATTERN}),
    AfterValidator(formats.check_claim_token),
]


class Input(BaseModel):
    """Request bodies reject unknown fields: a misspelt field is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    total: int
    limit: int
    offset: int
    items: list[T]


def page_of(
    model: type[T], total: int, limit: int, offset: int, rows: Iterable[Mapping[str, Any]]
) -> Page[T]:
    return Page[model](  # type: ignore[valid-type]
        total=total, limit=limit, offset=offset, items=[model.model_validate(r) for r in rows]
    )
