"""``/api/v1/schools/{id}/menu``: the dated canteen menu (D27-A, protocol.md "Canteen").

A day's menu is one set per meal period (the boards' ``meal_periods`` names), each a list of
the school's dishes in order, the first its main dish. Writing a day between today and
``menu_days_ahead`` days on queues the school's canteen boards their new menu (a ``config``
command through cloud/commands, audited and retried; a board offline now gets it when it comes
back)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field, StrictInt, StringConstraints, TypeAdapter

from cloud.api import etag
from cloud.api.deps import CanteenReader, ConnDep, MenuPlanner, SettingsDep
from cloud.api.models import BIGINT_MAX, Input, IsoDate
from cloud.auth import scope
from cloud.commands import menu as menus
from cloud.commands.config_keys import PERIOD_NAME
from cloud.domain import menus as menu_days
from cloud.domain.errors import Invalid

router = APIRouter(prefix="/api/v1", tags=["menu"])

SchoolPath = Annotated[str, Path(min_length=1, max_length=64)]
DishRef = Annotated[StrictInt, Field(ge=1, le=BIGINT_MAX)]
PeriodName = Annotated[str, StringConstraints(pattern=PERIOD_NAME.pattern)]
PLAN_AHEAD_DAYS = menu_days.PLAN_AHEAD_DAYS
RANGE_MAX_DAYS = 62


DishSet = Annotated[list[DishRef], Field(min_length=1, max_length=8)]


class MenuDayIn(Input):
    periods: dict[PeriodName, DishSet] = Field(
        max_length=8, description='{"lunch": [main dish id, other dish ids...]}; {} clears'
    )


class MenuDish(BaseModel):
    id: int
    name_kk: str
    name_ru: str
    name_en: str
    photo_url: str | None
    price: Decimal
    allergens: list[str]
    allergen_mask: int


class MenuSet(BaseModel):
    dishes: list[MenuDish]
    price: Decimal = Field(description="the set's price: the sum of its dishes")
    allergen_mask: int = Field(description="the OR of its dishes' masks (what the board blocks)")


class MenuDayOut(BaseModel):
    school_id: str
    date: date
    periods: dict[str, MenuSet]


class MenuWriteOut(MenuDayOut):
    pushed: list[int] = Field(description="ids of the menu commands queued to canteen boards")


@router.put("/schools/{school_id}/menu/{day}", response_model=MenuWriteOut)
def put_menu_day(
    conn: ConnDep, p: MenuPlanner, s: SettingsDep, school_id: SchoolPath, day: IsoDate,
    body: MenuDayIn,
) -> MenuWriteOut:  # fmt: skip
    """Replace the school's menu for one local date (periods not named are removed). Dishes must
    be active dishes of the school, each at most once per set. Today or later only (a past day's
    meals are priced already). Within today + ``menu_days_ahead`` the canteen boards get it."""
    out, pushed = menu_days.save_day(conn, p, school_id, day, dict(body.periods),
                                     s.menu_days_ahead)  # fmt: skip
    return MenuWriteOut(**MenuDayOut.model_validate(out).model_dump(), pushed=pushed)


_MENU_JSON = TypeAdapter(list[MenuDayOut])


@router.get(
    "/schools/{school_id}/menu",
    response_model=list[MenuDayOut],
    responses={304: {"description": "If-None-Match named this answer's ETag: not changed"}},
)
def get_menu(
    conn: ConnDep,
    p: CanteenReader,
    school_id: SchoolPath,
    from_: Annotated[IsoDate | None, Query(alias="from")] = None,
    to: Annotated[IsoDate | None, Query()] = None,
    *,
    request: Request,
) -> Response:
    """The planned days between ``from`` and ``to`` (inclusive; default today and the next 7
    days, at most 62 days), with each set's dishes, price and allergen mask. With an ETag: a
    parent's app revalidating it gets 304 (cloud/api/etag.py, issue #19)."""
    scope.require_school(conn, p, school_id)
    first = from_ or menus.school_today(conn, school_id)
    last = to or first + timedelta(days=7)
    if last < first:
        raise Invalid("to", "'to' is before 'from'")
    if (last - first).days >= RANGE_MAX_DAYS:
        raise Invalid("to", f"at most {RANGE_MAX_DAYS} days at once")
    days = [
        MenuDayOut.model_validate(d) for d in menu_days.menu_range(conn, p, school_id, first, last)
    ]
    return etag.json_response(request, _MENU_JSON.dump_json(days))
