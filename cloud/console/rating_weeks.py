"""The console's meal ratings (D28-G): the parents' ratings of the school's dishes, averaged per
dish for one ISO week, lowest first (cloud/domain/ratings.py ``weekly_averages``, the function
``GET /api/v1/schools/{id}/ratings`` answers from), for those who plan the menu (the API's
``MenuPlanner``: platform and school admins, canteen operators)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated
from urllib.parse import urlencode

from babel.dates import format_date
from babel.numbers import format_decimal
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from cloud.api.deps import ConnDep
from cloud.auth import scope
from cloud.auth.principal import Role
from cloud.console import i18n, nav
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.today import schools_in
from cloud.console.web import render
from cloud.domain import menus, ratings
from cloud.domain.errors import NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
PLANNERS: tuple[Role, ...] = ("platform_admin", "school_admin", "canteen_operator")
nav.register("/ratings", N_("Ratings"), PLANNERS, 55)


@router.get("/ratings")
def ratings_page(
    request: Request, conn: ConnDep, user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
    week: Annotated[date | None, Query(description="a day of the week to show")] = None,
) -> Response:  # fmt: skip
    require_role(user, PLANNERS)
    lang = _lang(request, conn, user)
    schools = schools_in(conn, scope.school_ids(conn, user))
    shown = school or user.school_id or (schools[0][0] if len(schools) == 1 else None)
    try:
        if shown:
            scope.require_school(conn, user, shown)
    except NotFound:
        return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))
    rows, monday = [], None
    if shown:
        monday = ratings.monday_of(week or menus.school_today(conn, shown))
        rows = [
            {"name": menus.dish_name(vars(r), lang), "ratings": r.ratings,
             "average": format_decimal(r.average, "0.00", locale=i18n.CLDR[lang]),
             "low": r.average < 3, "lowest": r.lowest, "highest": r.highest,
             "comments": r.comments}
            for r in ratings.weekly_averages(conn, shown, monday)
        ]  # fmt: skip

    def link(day: date) -> str:
        return "/ratings?" + urlencode({"school": shown, "week": day.isoformat()})

    label = ""
    if monday is not None:
        end = monday + timedelta(days=6)
        cldr = i18n.CLDR[lang]
        first = format_date(monday, "d MMM", locale=cldr)
        label = f"{first} – {format_date(end, 'd MMM y', locale=cldr)}"
    return render(request, "rating_weeks.html", lang, user=user, nav=_nav(user), schools=schools,
                  school=shown, rows=rows, week_label=label,
                  prev_url=link(monday - timedelta(days=7)) if monday else "",
                  next_url=link(monday + timedelta(days=7)) if monday else "")  # fmt: skip
