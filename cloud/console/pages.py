"""The console's pages: Today and Live events. Each reads through the API's own scope rules
(cloud/auth/scope.py) and query functions, so a page shows exactly what the same person's API
calls would return."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api import event_cursor
from cloud.api.deps import EVENT_READERS, ConnDep
from cloud.api.events import EventFilter, events_in_scope
from cloud.auth import scope
from cloud.auth.principal import Principal, Role
from cloud.console import i18n, nav, reports_due
from cloud.console.guard import CONSOLE_ROLES, ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.today import rollup, schools_in, today
from cloud.console.web import language, render
from cloud.domain.errors import NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])

# Who may open which page: the API's rules for the data behind it.
# Today: attendance and meals, as the API's reports (GET /api/v1/reports...: P, D, S).
TODAY_ROLES: tuple[Role, ...] = ("platform_admin", "district_authority", "school_admin")
# Live events: the API's event readers (GET /api/v1/events), less guardians (not console users).
LIVE_ROLES: tuple[Role, ...] = tuple(r for r in EVENT_READERS if r in CONSOLE_ROLES)  # type: ignore[misc]
PAGE_SIZE = 50


def _lang(request: Request, conn: ConnDep, user: Principal) -> str:
    row = conn.execute("SELECT locale FROM users WHERE id = %s", (user.user_id,)).fetchone()
    return language(request, user_locale=row[0] if row and row[0] else None)


nav.register("/today", N_("Today"), TODAY_ROLES, 10)
nav.register("/live", N_("Live events"), LIVE_ROLES, 20)
nav.register("/password", N_("Password"), None, 900)
nav.register("/docs", N_("API"), None, 910)
_nav = nav.for_user


@router.get("/")
def home(user: ConsoleUser) -> Response:
    if user.role in TODAY_ROLES:
        return RedirectResponse("/today", status_code=303)
    if user.role == "technician":  # their page is the fleet (D28-E)
        return RedirectResponse("/fleet", status_code=303)
    if user.role == "canteen_operator":  # their page is the menu planner (D28-D)
        return RedirectResponse("/menu", status_code=303)
    return RedirectResponse("/password", status_code=303)


def _school_choice(
    conn: ConnDep, user: Principal, wanted: str | None
) -> tuple[list[tuple[str, str]], str | None]:
    """The schools in the user's scope and the one shown: ``wanted`` when in scope (else
    NotFound, as the API answers), else the user's own, else the first."""
    ids = scope.school_ids(conn, user)
    schools = schools_in(conn, ids)
    if wanted:
        scope.require_school(conn, user, wanted)
        return schools, wanted
    return schools, (user.school_id or (schools[0][0] if schools else None))


@router.get("/today")
def today_page(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    require_role(user, TODAY_ROLES)
    lang = _lang(request, conn, user)
    try:
        schools, shown = _school_choice(conn, user, school)
    except NotFound:
        return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))
    if not school and user.school_id is None and len(schools) > 1:
        # a district's or the platform's users: every school of the scope, one row each
        return render(request, "today_rollup.html", lang, user=user, nav=_nav(user),
                      rows=rollup(conn, schools))  # fmt: skip
    day = today(conn, shown) if shown else None
    refresh_url = "/today?" + urlencode({"school": shown}) if school else "/today"
    return render(request, "today.html", lang, user=user, nav=_nav(user), schools=schools,
                  school=shown, day=day, refresh_url=refresh_url,
                  banner=reports_due.reminders(conn, user, lang, shown))  # fmt: skip


def _local_input(value: str | None) -> datetime | None:
    """A ``datetime-local`` field (no offset): the console's time zone (Asia/Almaty)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=i18n.ZONE)


@router.get("/live")
def live_page(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
    device: Annotated[str | None, Query(max_length=32)] = None,
    result: Annotated[str | None, Query(max_length=10)] = None,
    since: Annotated[str | None, Query(max_length=32)] = None,
    until: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    klass: Annotated[str | None, Query(alias="class", max_length=20)] = None,
    name: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    require_role(user, LIVE_ROLES)
    lang = _lang(request, conn, user)
    school, device = (school or None), (device or "").strip().lower() or None
    name = (name or "").strip() or None
    form = {"school": school or "", "device": device or "", "result": result or "",
            "since": since or "", "until": until or "", "class": klass or "",
            "name": name or ""}  # fmt: skip
    schools = schools_in(conn, scope.school_ids(conn, user))
    errors: list[str] = []
    after = None
    try:
        t_since, t_until = _local_input(since), _local_input(until)
    except ValueError:
        errors.append(N_("The time is not a date and time."))
        t_since = t_until = None
    class_id = None
    if klass:
        if not klass.isdigit() or not 0 < int(klass) < 2**63:
            errors.append(N_("Unknown class."))
        else:
            class_id = int(klass)
    if result not in (None, "", "granted", "denied"):
        errors.append(N_("Unknown result."))
    if cursor:
        try:
            after = event_cursor.decode(cursor)
        except ValueError:
            errors.append(N_("That page link is broken."))
    if t_since and t_until and t_since > t_until:
        errors.append(N_("The start is after the end."))
    if school:
        try:
            scope.require_school(conn, user, school)
        except NotFound:
            errors.append(N_("No such school."))
    if not errors and not t_since and not t_until and not cursor:
        # the last 24 hours unless asked otherwise; in the form, so the next pages keep it
        t_since = datetime.now(i18n.ZONE).replace(second=0, microsecond=0) - timedelta(hours=24)
        form["since"] = t_since.strftime("%Y-%m-%dT%H:%M")
    events: list = []
    total, next_cursor = 0, None
    if not errors:
        f = EventFilter(school=school, device=device,
                        result=result if result in ("granted", "denied") else None,  # type: ignore[arg-type]
                        since=t_since, until=t_until, class_id=class_id, name=name)  # fmt: skip
        total, events, next_cursor = events_in_scope(conn, user, f, after, PAGE_SIZE)
    query = {k: v for k, v in form.items() if v}
    # the classes of the school shown (one's own, or the one picked): a class filter needs one
    class_school = school or user.school_id or (schools[0][0] if len(schools) == 1 else None)
    classes: list[tuple[str, str]] = []
    if class_school is not None:
        rows = conn.execute(
            "SELECT id, name FROM classes WHERE school_id = %s ORDER BY name", (class_school,)
        ).fetchall()
        classes = [(str(r[0]), str(r[1])) for r in rows]
    next_url = "/live?" + urlencode({**query, "cursor": next_cursor}) if next_cursor else None
    return render(request, "live.html", lang,
                  user=user, nav=_nav(user), schools=schools, form=form, events=events,
                  total=total, next_url=next_url, first_page=cursor is None,
                  refresh_url="/live?" + urlencode(query), errors=errors,
                  classes=classes)  # fmt: skip
