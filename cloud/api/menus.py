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
from cloud.domain import store
from cloud.domain.errors import Invalid

router = APIRouter(prefix="/api/v1", tags=["menu"])

SchoolPath = Annotated[str, Path(min_length=1, max_length=64)]
DishRef = Annotated[StrictInt, Field(ge=1, le=BIGINT_MAX)]
PeriodName = Annotated[str, StringConstraints(pattern=PERIOD_NAME.pattern)]
PLAN_AHEAD_DAYS = 366
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


def _day(conn: ConnDep, school: str, day: date) -> dict[str, list[int]]:
    rows = conn.execute(
        "SELECT period, dish_ids FROM menus WHERE school_id = %s AND day = %s ORDER BY period",
        (school, day),
    ).fetchall()
    return {str(r[0]): [int(i) for i in r[1]] for r in rows}


def _expand(conn: ConnDep, school: str, days: dict[date, dict[str, list[int]]]) -> list[MenuDayOut]:
    ids = sorted({i for d in days.values() for ds in d.values() for i in ds})
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, name_kk, name_ru, name_en, photo_url, price, allergens, allergen_mask"
            " FROM dishes WHERE id = ANY(%s)",
            (ids,),
        )
        cols = [c.name for c in cur.description or ()]
        dishes = {int(r[0]): MenuDish.model_validate(dict(zip(cols, r, strict=True)))
                  for r in cur.fetchall()}  # fmt: skip
    out = []
    for day, periods in sorted(days.items()):
        sets = {}
        for name, dish_ids in periods.items():
            got = [dishes[i] for i in dish_ids if i in dishes]
            mask = 0
            for d in got:
                mask |= d.allergen_mask
            sets[name] = MenuSet(dishes=got, price=sum((d.price for d in got), Decimal(0)),
                                 allergen_mask=mask)  # fmt: skip
        out.append(MenuDayOut(school_id=school, date=day, periods=sets))
    return out


@router.put("/schools/{school_id}/menu/{day}", response_model=MenuWriteOut)
def put_menu_day(
    conn: ConnDep, p: MenuPlanner, s: SettingsDep, school_id: SchoolPath, day: IsoDate,
    body: MenuDayIn,
) -> MenuWriteOut:  # fmt: skip
    """Replace the school's menu for one local date (periods not named are removed). Dishes must
    be active dishes of the school, each at most once per set. Today or later only (a past day's
    meals are priced already). Within today + ``menu_days_ahead`` the canteen boards get it."""
    scope.require_school(conn, p, school_id)
    today = menus.school_today(conn, school_id)
    if day < today:
        raise Invalid("date", f"{day} is in the past for this school (today is {today})")
    if day > today + timedelta(days=PLAN_AHEAD_DAYS):
        raise Invalid("date", f"a menu is planned at most {PLAN_AHEAD_DAYS} days ahead")
    wanted = sorted({i for ids in body.periods.values() for i in ids})
    found = {
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM dishes WHERE school_id = %s AND active AND id = ANY(%s)",
            (school_id, wanted),
        ).fetchall()
    }
    for name, ids in body.periods.items():
        if len(set(ids)) != len(ids):
            raise Invalid(f"periods.{name}", "a dish appears twice in the set")
        missing = [i for i in ids if i not in found]
        if missing:
            raise Invalid(f"periods.{name}",
                          f"not active dishes of school {school_id}: {missing}")  # fmt: skip
    before = _day(conn, school_id, day)
    conn.execute("DELETE FROM menus WHERE school_id = %s AND day = %s", (school_id, day))
    for name, ids in body.periods.items():
        conn.execute(
            "INSERT INTO menus (school_id, day, period, dish_ids, updated_by)"
            " VALUES (%s, %s, %s, %s, %s)",
            (school_id, day, name, ids, p.user_id),
        )
    after = dict(body.periods)
    action = "create" if not before else "delete" if not after else "update"
    store.audit(conn, p, action, "menus", f"{school_id}/{day}",
                {"periods": before} if before else None,
                {"periods": after} if after else None, school_id)  # fmt: skip
    pushed: list[int] = []
    if day <= today + timedelta(days=s.menu_days_ahead) and before != after:
        pushed = menus.push_school(conn, school_id, s.menu_days_ahead)
    out = _expand(conn, school_id, {day: after})[0]
    return MenuWriteOut(**out.model_dump(), pushed=pushed)


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
    rows = conn.execute(
        "SELECT day, period, dish_ids FROM menus WHERE school_id = %s AND day BETWEEN %s AND %s"
        " ORDER BY day, period",
        (school_id, first, last),
    ).fetchall()
    days: dict[date, dict[str, list[int]]] = {}
    for day, period, ids in rows:
        days.setdefault(day, {})[str(period)] = [int(i) for i in ids]
    return etag.json_response(request, _MENU_JSON.dump_json(_expand(conn, school_id, days)))
