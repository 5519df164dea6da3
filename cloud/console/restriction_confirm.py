"""The console's allergen restrictions to confirm (D28-G): a school admin sees the guardians'
changes the school has not confirmed yet (what a guardian added is in force already; what a
guardian removed waits) and confirms or declines each, through the same domain functions as
``POST /api/v1/people/{id}/restrictions/confirm|decline`` (cloud/domain/restrictions.py) and the
API's role tuple (cloud/api/deps.py ``SchoolAdmin``: platform and school admins)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.auth import scope
from cloud.auth.principal import Principal, Role
from cloud.console import i18n, nav
from cloud.console.allergen_names import named
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.today import schools_in
from cloud.console.web import render
from cloud.domain import restrictions
from cloud.domain.allergens import ALLERGENS
from cloud.domain.errors import Conflict, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
CONFIRMERS: tuple[Role, ...] = ("platform_admin", "school_admin")  # the API's SchoolAdmin
nav.register("/restrictions", N_("Allergies"), CONFIRMERS, 45)
LIMIT = 200
CHANGED = N_("The guardian changed the restrictions meanwhile: look at them again.")


def _waiting(conn: ConnDep, school: str, lang: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT p.id, p.full_name, c.name, r.allergens, r.requested_allergens, r.requested_at,"
        " r.updated_at, u.email, r.note, s.timezone"
        " FROM allergen_restrictions r JOIN people p ON p.id = r.person_id"
        " JOIN schools s ON s.id = p.school_id LEFT JOIN classes c ON c.id = p.class_id"
        " LEFT JOIN users u ON u.id = r.set_by"
        " WHERE p.school_id = %s AND r.confirmed_at IS NULL"
        " ORDER BY coalesce(r.requested_at, r.updated_at), p.id LIMIT %s",
        (school, LIMIT),
    ).fetchall()
    out = []
    for pid, name, cls, enforced, requested, asked, updated, email, note, zone in rows:
        removed = [a for a in enforced if requested is not None and a not in requested]
        out.append({
            "id": pid, "name": name, "class": cls or "", "by": email or "", "note": note,
            "enforced": named(lang, enforced), "removed": named(lang, removed),
            "seen": list(requested if requested is not None else enforced),
            "pending": requested is not None,
            "when": format_datetime((asked or updated).astimezone(_zone(zone)), "d MMM y, HH:mm",
                                    locale=i18n.CLDR[lang]),
        })  # fmt: skip
    return out


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return i18n.ZONE


def _school(conn: ConnDep, user: Principal, school: str | None) -> tuple[str | None, list[Any]]:
    schools = schools_in(conn, scope.school_ids(conn, user))
    shown = school or user.school_id or (schools[0][0] if len(schools) == 1 else None)
    if shown:
        scope.require_school(conn, user, shown)
    return shown, schools


@router.get("/restrictions")
def restrictions_page(
    request: Request, conn: ConnDep, user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:  # fmt: skip
    require_role(user, CONFIRMERS)
    lang = _lang(request, conn, user)
    try:
        shown, schools = _school(conn, user, school)
    except NotFound:
        return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))
    items = _waiting(conn, shown, lang) if shown else []
    return render(request, "restrictions_confirm.html", lang, user=user, nav=_nav(user),
                  schools=schools, school=shown, items=items, error=None,
                  done=done if done in ("confirmed", "declined") else None)  # fmt: skip


def _decide(
    request: Request, conn: ConnDep, user: Principal, person: int, seen: list[str], how: str
) -> Response:
    require_role(user, CONFIRMERS)
    lang = _lang(request, conn, user)
    try:
        school = scope.require_person(conn, user, person)
    except NotFound:
        return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))
    error = None
    if any(a not in ALLERGENS for a in seen):
        error = CHANGED
    else:
        try:
            (restrictions.confirm if how == "confirmed" else restrictions.decline)(
                conn, user, person, seen
            )
        except Conflict:
            error = CHANGED
    if error is not None:
        shown, schools = _school(conn, user, school)
        return render(request, "restrictions_confirm.html", lang, status_code=409, user=user,
                      nav=_nav(user), schools=schools, school=shown, done=None,
                      items=_waiting(conn, school, lang),
                      error=i18n.gettext(lang, error))  # fmt: skip
    return RedirectResponse("/restrictions?" + urlencode({"school": school, "done": how}), 303)


PersonPath = Annotated[int, Path(ge=1, le=2**63 - 1)]
SeenForm = Annotated[list[str] | None, Form(max_length=16)]


@router.post("/restrictions/{person_id}/confirm")
def confirm(
    request: Request, conn: ConnDep, user: ConsoleUser, person_id: PersonPath,
    allergen: SeenForm = None,
) -> Response:  # fmt: skip
    return _decide(request, conn, user, person_id, list(allergen or []), "confirmed")


@router.post("/restrictions/{person_id}/decline")
def decline(
    request: Request, conn: ConnDep, user: ConsoleUser, person_id: PersonPath,
    allergen: SeenForm = None,
) -> Response:  # fmt: skip
    return _decide(request, conn, user, person_id, list(allergen or []), "declined")
