"""The console's menu planner (issue #15 "Menu planner", D28-D): a school's week of meal sets,
a day's sets picked from the dish catalogue, and copying a day or a week onward.

Reads and writes go through cloud/domain/menus.py, the functions behind
``GET/PUT /api/v1/schools/{id}/menu``: the same checks, audit rows and board pushes. Who may
plan is the API's ``MenuPlanner``; another school's id is "not found", as in the API."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.dates import format_date
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from cloud.api.deps import ConnDep, MenuPlanner, SchoolAdmin, SettingsDep, roles_of
from cloud.api.menus import MenuDayIn
from cloud.auth.principal import Principal
from cloud.console import i18n, menu_dishes, nav
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.menu_text import allergen_labels, money, period_label
from cloud.console.pages import _lang, _nav, _school_choice
from cloud.console.web import render
from cloud.domain import dishes, menus
from cloud.domain.errors import Invalid, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
router.include_router(menu_dishes.router)
PLANNERS = roles_of(MenuPlanner)
DISH_WRITERS = roles_of(SchoolAdmin)
SLOTS = 5  # dishes a set may hold on this page (the API allows 8; a school's set has 2-4)
nav.register("/menu", N_("Menu"), PLANNERS, 50)
SchoolQuery = Annotated[str | None, Query(max_length=64)]


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _day_label(lang: str, day: date) -> str:
    return format_date(day, "EEEE, d MMMM", locale=i18n.CLDR[lang])


def view_sets(lang: str, periods: dict[str, Any]) -> list[dict[str, Any]]:
    """A day's sets as the templates show them: labels, names and money in ``lang``."""
    out = []
    for name, s in periods.items():
        out.append({
            "name": name, "label": period_label(lang, name),
            "dishes": [{"name": menus.dish_name(d, lang), "thumb": d["thumb_url"],
                        "price": money(lang, d["price"])} for d in s["dishes"]],
            "price": money(lang, s["price"]), "allergens": allergen_labels(lang, s["allergens"]),
        })  # fmt: skip
    return out


def _school(conn: ConnDep, user: Principal, wanted: str | None) -> tuple[list, str | None]:
    schools, shown = _school_choice(conn, user, wanted or None)
    return schools, shown


def _week_url(school: str, monday: date, **extra: str) -> str:
    return "/menu?" + urlencode({"school": school, "week": monday.isoformat(), **extra})


@router.get("/menu")
def week_page(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: SchoolQuery = None,
    week: Annotated[str | None, Query(max_length=10)] = None,
    done: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    require_role(user, PLANNERS)
    lang = _lang(request, conn, user)
    try:
        schools, shown = _school(conn, user, school)
    except NotFound:
        return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))
    if shown is None:
        return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))
    today = menus.school_today(conn, shown)
    monday = monday_of(_parse_day(week or "") or today)
    days = []
    for d in menus.week(conn, user, shown, monday):
        day: date = d["date"]
        days.append({"date": day.isoformat(), "label": _day_label(lang, day),
                     "today": day == today, "past": day < today,
                     "next": (day + timedelta(days=1)).isoformat(),
                     "sets": view_sets(lang, d["periods"])})  # fmt: skip
    return render(request, "menu_week.html", lang, user=user, nav=_nav(user), schools=schools,
                  school=shown, days=days, monday=monday.isoformat(),
                  this_week=monday == monday_of(today),
                  week_label=_day_label(lang, monday).split(",")[-1].strip() + " – "
                  + format_date(monday + timedelta(days=6), "d MMMM y", locale=i18n.CLDR[lang]),
                  prev_url=_week_url(shown, monday - timedelta(days=7)),
                  next_url=_week_url(shown, monday + timedelta(days=7)),
                  now_url=_week_url(shown, monday_of(today)), done=done,
                  can_edit_dishes=user.role in DISH_WRITERS)  # fmt: skip


def _day_form(
    request: Request, conn: ConnDep, user: Principal, lang: str, school: str, day: date,
    chosen: dict[str, list[int]], errors: list[str], status: int = 200,
) -> Response:  # fmt: skip
    catalogue = dishes.of_school(conn, school, active_only=True)
    options = [{"id": d["id"], "name": menus.dish_name(d, lang), "price": str(d["price"]),
                "price_label": money(lang, d["price"]),
                "allergens": allergen_labels(lang, list(d["allergens"]))}
               for d in catalogue]  # fmt: skip
    periods = menus.periods_of(conn, school)
    for name in chosen:
        if name not in periods:
            periods.append(name)
    saved = menus.menu_range(conn, user, school, day, day)
    saved_sets = {s["name"]: s for s in view_sets(lang, saved[0]["periods"])} if saved else {}
    rows = []
    for name in periods:
        ids = chosen.get(name, [])
        rows.append({"name": name, "label": period_label(lang, name),
                     "slots": [ids[i] if i < len(ids) else None for i in range(SLOTS)],
                     "saved": saved_sets.get(name)})  # fmt: skip
    return render(request, "menu_day.html", lang, status_code=status, user=user, nav=_nav(user),
                  school=school, day=day.isoformat(), label=_day_label(lang, day),
                  rows=rows, options=options, errors=errors,
                  back_url=_week_url(school, monday_of(day)),
                  zero=money(lang, 0))  # fmt: skip


def _parse_day(value: str) -> date | None:
    """A date of this century (a far one would overflow a week's arithmetic), else None."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if 2000 <= day.year <= 2100 else None


@router.get("/menu/day/{day}")
def day_page(
    request: Request, conn: ConnDep, user: ConsoleUser, day: str, school: SchoolQuery = None
) -> Response:
    require_role(user, PLANNERS)
    lang = _lang(request, conn, user)
    parsed = _parse_day(day)
    try:
        _, shown = _school(conn, user, school)
    except NotFound:
        shown = None
    if parsed is None or shown is None:
        return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))
    current = menus.planned(conn, shown, parsed, parsed).get(parsed, {})
    return _day_form(request, conn, user, lang, shown, parsed, current, [])


@router.post("/menu/day/{day}")
def save_day_form(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    s: SettingsDep,
    day: str,
    school: Annotated[str, Form(max_length=64)] = "",
    dish: Annotated[list[str], Form(max_length=8 * SLOTS)] = [],  # noqa: B006 (FastAPI copies)
) -> Response:
    """Each select is a ``dish`` field ``<period>:<dish id>`` (empty: not used), in the page's
    order, so a period's first chosen dish is its main dish."""
    require_role(user, PLANNERS)
    lang = _lang(request, conn, user)
    parsed = _parse_day(day)
    try:
        _, shown = _school(conn, user, school)
    except NotFound:
        shown = None
    if parsed is None or shown is None:
        return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))
    chosen: dict[str, list[int]] = {}
    errors: list[str] = []
    for value in dish:
        if not value:
            continue
        name, _, ref = value.partition(":")
        if not ref.isdigit() or len(ref) > 18 or not name:
            errors.append(i18n.gettext(lang, N_("Pick dishes from the list.")))
            break
        chosen.setdefault(name, []).append(int(ref))
    if not errors:
        try:
            MenuDayIn(periods=chosen)  # the API's rules for the body: period names, 1-8 dishes
            menus.save_day(conn, user, shown, parsed, chosen, s.menu_days_ahead)
        except ValidationError:
            errors.append(i18n.gettext(lang, N_("Pick dishes from the list.")))
        except Invalid as e:
            errors.append(_invalid_text(lang, e))
    if errors:
        return _day_form(request, conn, user, lang, shown, parsed, chosen, errors, status=422)
    return RedirectResponse(_week_url(shown, monday_of(parsed), done="saved"), status_code=303)


def _invalid_text(lang: str, e: Invalid) -> str:
    if e.field in ("date", "to") and "past" in e.msg:
        return i18n.gettext(lang, N_("That day has passed: plan today or a later day."))
    if e.field in ("date", "to"):
        return i18n.gettext(lang, N_("That day is more than a year ahead."))
    if "twice" in e.msg:
        return i18n.gettext(lang, N_("A dish appears twice in the same meal."))
    return i18n.gettext(lang, N_("A dish is not on this school's list (or was retired)."))


@router.post("/menu/copy")
def copy_days(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    s: SettingsDep,
    school: Annotated[str, Form(max_length=64)] = "",
    first: Annotated[str, Form(alias="from", max_length=10)] = "",
    days: Annotated[int, Form(ge=1, le=7)] = 1,
    to: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Copy a day (days=1) or a week (days=7) to start at ``to``; nothing planned is not
    copied, so an empty source day leaves its target as it is."""
    require_role(user, PLANNERS)
    lang = _lang(request, conn, user)
    try:
        _, shown = _school(conn, user, school)
    except NotFound:
        shown = None
    src, dst = _parse_day(first), _parse_day(to)
    if shown is None or src is None:
        return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))
    error = None
    if dst is None:
        error = i18n.gettext(lang, N_("Choose the day to copy to."))
    else:
        try:
            written = menus.copy_days(conn, user, shown, src, days, dst, s.menu_days_ahead)
        except Invalid as e:
            error = _invalid_text(lang, e)
    if error is not None:
        return _copy_refused(request, conn, user, lang, shown, src, error)
    target = monday_of(dst) if dst else monday_of(src)
    return RedirectResponse(_week_url(shown, target, done="copied" if written else "empty"),
                            status_code=303)  # fmt: skip


def _copy_refused(
    request: Request, conn: ConnDep, user: Principal, lang: str, school: str, src: date,
    error: str,
) -> Response:  # fmt: skip
    return render(request, "menu_refused.html", lang, status_code=422, user=user,
                  nav=_nav(user), error=error,
                  back_url=_week_url(school, monday_of(src)))  # fmt: skip
