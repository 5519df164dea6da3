"""The parents' app's menu and meal ratings (issue #16, D28-G).

``/app/{lang}/menu``: the child's school's dated menu for this week and next (the same reading
as the API's ``GET /api/v1/schools/{id}/menu``: cloud/domain/menus.py), each dish in the page's
language with its price, allergens and photo, and what the canteen board will refuse this
child marked **blocked** by the board's own rule (a set is refused when any of its dishes'
allergen bits hits the child's mask, the whitelist's copy of the restrictions).

``/app/{lang}/rate``: a dish the child was served that day (cloud/domain/ratings.py, the rule
``POST /api/v1/ratings`` applies too), 1-5 and a comment, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.dates import format_date
from babel.numbers import format_decimal
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.console import app_nav, i18n
from cloud.console.allergen_names import named
from cloud.console.app_pages import AppUser, Child, children
from cloud.console.guard import check_csrf
from cloud.console.i18n import N_
from cloud.console.web import render
from cloud.domain import menus, ratings
from cloud.domain.allergens import to_names
from cloud.domain.errors import Conflict, Invalid, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
app_nav.register("menu", N_("Menu"), 20, app_nav.BOTH)
ChildQuery = Annotated[int | None, Query(ge=1, le=2**63 - 1)]
PERIOD_NAMES = {"breakfast": N_("Breakfast"), "lunch": N_("Lunch"),
                "snack": N_("Afternoon snack"), "dinner": N_("Dinner")}  # fmt: skip
REFUSALS = {
    "not_served": N_("This dish was not served to your child that day, so it cannot be rated."),
    "rated": N_("You have already rated this dish for that day."),
    "score": N_("Choose a score from 1 to 5."),
    "comment": N_("The comment is too long (2,000 characters at most)."),
    "day": N_("This day has not come yet."),
}


def money(value: Decimal, lang: str) -> str:
    return format_decimal(value, "#,##0.##", locale=i18n.CLDR[lang]) + " ₸"


def pick_child(conn: ConnDep, user: Principal, child: int | None) -> tuple[list[Child], Child]:
    """The guardian's children and the one shown (the first by default). Another child is
    NotFound, as the API answers (cloud/auth/scope.py)."""
    kids = children(conn, user)
    if child is None:
        if not kids:
            raise NotFound("no child")
        child = kids[0].id
    scope.require_person(conn, user, child)
    return kids, next(k for k in kids if k.id == child)


def not_found(request: Request, lang: str, user: Principal, kids: list[Child]) -> Response:
    return render(request, "app_not_found.html", lang, status_code=404, user=user,
                  children=kids, page="")  # fmt: skip


@dataclass
class DishView:
    id: int
    name: str
    price: str
    allergens: list[str]
    blocked: list[str]  # the child's restricted allergens in it, named
    photo: str | None
    served: bool = False
    rating: dict[str, Any] | None = None


@dataclass
class SetView:
    period: str
    price: str
    blocked: list[str]
    dishes: list[DishView] = field(default_factory=list)


@dataclass
class DayView:
    day: date
    label: str
    today: bool
    past: bool
    sets: list[SetView]


def _school_of(conn: ConnDep, person: int) -> tuple[str, int]:
    row = conn.execute("SELECT school_id, allergen_mask FROM people WHERE id = %s", (person,))
    got = row.fetchone()
    assert got is not None
    return str(got[0]), int(got[1])


def menu_weeks(conn: ConnDep, user: Principal, kid: Child, lang: str) -> list[list[DayView]]:
    """This week and next, Monday to Sunday, planned days only, for the page."""
    school, mask = _school_of(conn, kid.id)
    today = menus.school_today(conn, school)
    monday = ratings.monday_of(today)
    served = ratings.served_dishes(conn, kid.id, monday, today)
    rated = ratings.ratings_of(conn, kid.id, monday, today)
    weeks: list[list[DayView]] = [[], []]
    for w in (0, 1):
        for day in menus.week(conn, user, school, monday + timedelta(days=7 * w)):
            if not day["periods"]:
                continue
            when = day["date"]
            sets = []
            for name in sorted(day["periods"], key=_period_order):
                got = day["periods"][name]
                dishes = [DishView(
                    id=int(d["id"]), name=menus.dish_name(d, lang), price=money(d["price"], lang),
                    allergens=named(lang, d["allergens"]),
                    blocked=named(lang, to_names(int(d["allergen_mask"]) & mask)),
                    photo=d.get("thumb_url") or d.get("photo_url"),
                    served=(int(d["id"]), when) in served, rating=rated.get((int(d["id"]), when)),
                ) for d in got["dishes"]]  # fmt: skip
                label = PERIOD_NAMES.get(name)
                sets.append(SetView(
                    period=i18n.gettext(lang, label) if label else name,
                    price=money(got["price"], lang),
                    blocked=named(lang, to_names(int(got["allergen_mask"]) & mask)),
                    dishes=dishes,
                ))  # fmt: skip
            label = format_date(when, "EEEE, d MMMM", locale=i18n.CLDR[lang])
            weeks[w].append(DayView(when, label, when == today, when < today, sets))
    return weeks


def _period_order(name: str) -> tuple[int, str]:
    order = list(PERIOD_NAMES)
    return (order.index(name) if name in order else len(order), name)


@router.get("/app/{lang}/menu")
def menu_page(
    request: Request, conn: ConnDep, lang: str, user: AppUser, child: ChildQuery = None,
    rated: Annotated[int | None, Query(ge=0, le=1)] = None,
) -> Response:  # fmt: skip
    try:
        kids, kid = pick_child(conn, user, child)
    except NotFound:
        if not children(conn, user) and child is None:
            return render(request, "app_feed.html", lang, user=user, children=[], shown=None,
                          items=[], page="menu")  # fmt: skip
        return not_found(request, lang, user, children(conn, user))
    weeks = menu_weeks(conn, user, kid, lang)
    return render(request, "app_menu.html", lang, user=user, children=kids, shown=kid,
                  weeks=weeks, page="menu", child_id=kid.id, thanks=bool(rated))  # fmt: skip


def _rate_target(
    conn: ConnDep, user: Principal, child: int | None, dish: int, day: date, lang: str
) -> tuple[list[Child], Child, str]:
    kids, kid = pick_child(conn, user, child)
    row = conn.execute("SELECT name_kk, name_ru, name_en, school_id FROM dishes WHERE id = %s",
                       (dish,)).fetchone()  # fmt: skip
    if row is None or row[3] != _school_of(conn, kid.id)[0]:
        raise NotFound("no such dish at the child's school")
    name = menus.dish_name({"name_kk": row[0], "name_ru": row[1], "name_en": row[2]}, lang)
    return kids, kid, name


@router.get("/app/{lang}/rate")
def rate_form(
    request: Request, conn: ConnDep, lang: str, user: AppUser,
    dish: Annotated[int, Query(ge=1, le=2**63 - 1)], day: Annotated[date, Query()],
    child: ChildQuery = None,
) -> Response:  # fmt: skip
    try:
        kids, kid, name = _rate_target(conn, user, child, dish, day, lang)
    except NotFound:
        return not_found(request, lang, user, children(conn, user))
    served = (dish, day) in ratings.served_dishes(conn, kid.id, day, day)
    given = ratings.ratings_of(conn, kid.id, day, day).get((dish, day))
    error = None if served else i18n.gettext(lang, REFUSALS["not_served"])
    return _rate_page(request, lang, user, kids, kid, name, dish, day, given, error, 200,
                      can_rate=served and given is None)  # fmt: skip


def _rate_page(
    request: Request, lang: str, user: Principal, kids: list[Child], kid: Child, name: str,
    dish: int, day: date, given: dict[str, Any] | None, error: str | None, status: int,
    score: int | None = None, comment: str = "", *, can_rate: bool,
) -> Response:  # fmt: skip
    label = format_date(day, "EEEE, d MMMM y", locale=i18n.CLDR[lang])
    return render(request, "app_rate.html", lang, status_code=status, user=user, children=kids,
                  shown=kid, dish=dish, dish_name=name, day=day, day_label=label, given=given,
                  error=error, score=score, comment=comment, page="menu", child_id=kid.id,
                  can_rate=can_rate)  # fmt: skip


@router.post("/app/{lang}/rate")
def rate(
    request: Request, conn: ConnDep, lang: str, user: AppUser,
    dish: Annotated[int, Form(ge=1, le=2**63 - 1)], day: Annotated[date, Form()],
    child: Annotated[int, Form(ge=1, le=2**63 - 1)],
    score: Annotated[str, Form(max_length=2)] = "",
    comment: Annotated[str, Form(max_length=4000)] = "",
) -> Response:  # fmt: skip
    try:
        kids, kid, name = _rate_target(conn, user, child, dish, day, lang)
    except NotFound:
        return not_found(request, lang, user, children(conn, user))
    problem = None
    if score not in ("1", "2", "3", "4", "5"):
        problem = "score"
    elif len(comment) > 2000:
        problem = "comment"
    else:
        try:
            school = _school_of(conn, kid.id)[0]
            ratings.rate(conn, user, school, kid.id, dish, day, int(score), comment.strip())
        except Conflict:
            problem = "rated"
        except Invalid as exc:
            problem = "day" if exc.field == "served_on" else "not_served"
    if problem is not None:
        given = ratings.ratings_of(conn, kid.id, day, day).get((dish, day))
        return _rate_page(request, lang, user, kids, kid, name, dish, day, given,
                          i18n.gettext(lang, REFUSALS[problem]), 422,
                          int(score) if score.isdigit() else None, comment[:2000],
                          can_rate=problem in ("score", "comment"))  # fmt: skip
    back = f"/app/{lang}/menu?" + urlencode({"child": kid.id, "rated": 1})
    return RedirectResponse(back + f"#day-{day.isoformat()}", status_code=303)


def install(app: Any) -> None:
    """The app's menu, rating and restrictions pages, and the console's restrictions to
    confirm (D28-G)."""
    from cloud.console import app_restrictions, rating_weeks, restriction_confirm

    app.include_router(router)
    app.include_router(app_restrictions.router)
    app.include_router(restriction_confirm.router)  # the console's side (D28-G)
    app.include_router(rating_weeks.router)
