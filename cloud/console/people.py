"""The console's People and cards pages (issue #15): search the people of the caller's scope,
a person's page, enrol a card by typing its UID, revoke a lost card. Enrolling by a tap at a
reader is cloud/console/enrol_tap.py.

Who may do what is the API's: the role aliases of cloud/api/deps.py (``roles_of``), the scope of
cloud/auth/scope.py, and the same domain functions as ``/api/v1/people`` (cloud/domain/people.py),
so a page shows and changes exactly what the same person's API calls would."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.dates import format_date, get_day_names
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import (
    CardRevoker,
    ConnDep,
    PeopleReader,
    SchoolAdmin,
    roles_of,
)
from cloud.api.models import IdPath
from cloud.auth import scope, student_codes
from cloud.auth.principal import Principal, Role
from cloud.console import i18n, nav, subject_data_pages
from cloud.console.guard import CONSOLE_ROLES, ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.invitations import INVITERS
from cloud.console.pages import _lang, _nav, _school_choice
from cloud.console.person_view import (
    ALLERGEN_NAMES,
    ENTRY_KINDS,
    METHOD_NAMES,
    RELATIONS,
    REVOKE_REASONS,
    SECTION_ROLES,
    load,
)
from cloud.console.web import render
from cloud.domain import enrolment, formats, store
from cloud.domain import people as domain
from cloud.domain.cardkey import card_key as derive_card_key
from cloud.domain.errors import Conflict, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])


def _console(roles: tuple[Role, ...]) -> tuple[Role, ...]:
    return tuple(r for r in roles if r in CONSOLE_ROLES)


PEOPLE_ROLES = _console(roles_of(PeopleReader))  # GET /api/v1/people
CARD_WRITERS = _console(roles_of(SchoolAdmin))  # POST /api/v1/people/{id}/cards
CARD_REVOKERS = _console(roles_of(CardRevoker))  # POST /api/v1/cards/{key}/revoke
UID_SEARCHERS = _console(SECTION_ROLES["cards"])  # who reads cards may find a person by one
PAGE_SIZE = 50
MAX_OFFSET = 10_000  # bounded paging: past this, narrow the search
nav.register("/people", N_("People"), PEOPLE_ROLES, 30)

KINDS = {"student": N_("pupil"), "staff": N_("employee")}
# what a person's page says after a change (?done=...)
DONE = {
    "erased": subject_data_pages.ERASED,  # D29-B
    "deactivated": subject_data_pages.DEACTIVATED,
    "card_added": N_("The card was added. Readers get it with their next list of cards."),
    "card_revoked": N_("The card was revoked. Readers refuse it from their next list."),
    # D29-E (cloud/console/student_kit.py)
    "student_password": N_(
        "The pupil's password is set. They were signed out everywhere; an"
        " unused code slip no longer works."
    ),
}
# domain errors, as the page says them
CARD_TAKEN = N_("This card is already registered (a revoked card cannot be given out again).")
PERSON_INACTIVE = N_("This person is inactive: a card cannot be added.")
BAD_UID = N_(
    "Not a card UID: type 4, 7 or 10 bytes in hex (8, 14 or 20 digits, ':' or '-' between"
    " them allowed)."
)


def _not_found(request: Request, lang: str, user: Principal) -> Response:
    return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))


@router.get("/people")
def people_page(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    klass: Annotated[str | None, Query(alias="class", max_length=20)] = None,
    kind: Annotated[str | None, Query(max_length=10)] = None,
    status: Annotated[str | None, Query(max_length=10)] = None,
    uid: Annotated[str | None, Query(max_length=40)] = None,
    offset: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    require_role(user, PEOPLE_ROLES)
    lang = _lang(request, conn, user)
    try:
        schools, shown = _school_choice(conn, user, school or None)
    except NotFound:
        return _not_found(request, lang, user)
    q, uid = (q or "").strip() or None, (uid or "").strip() or None
    form = {"school": shown or "", "q": q or "", "class": klass or "", "kind": kind or "",
            "status": status or "active", "uid": uid or ""}  # fmt: skip
    errors: list[str] = []
    class_id = None
    if klass:
        if not klass.isdigit() or not 0 < int(klass) < 2**63:
            errors.append(N_("Unknown class."))
        else:
            class_id = int(klass)
    if kind not in (None, "", "student", "staff"):
        errors.append(N_("Unknown kind of person."))
    if form["status"] not in ("active", "inactive", "all"):
        errors.append(N_("Unknown status."))
    start = 0
    if offset:
        if not offset.isdigit() or int(offset) > MAX_OFFSET:
            errors.append(N_("That page link is broken."))
        else:
            start = int(offset)
    card_keys = None
    if uid and shown:
        if user.role not in UID_SEARCHERS:
            errors.append(N_("Your role does not read cards."))
        else:
            try:
                raw = formats.check_card_uid(uid)
            except ValueError:
                errors.append(BAD_UID)
            else:
                site = conn.execute("SELECT site_key FROM schools WHERE id = %s",
                                    (shown,)).fetchone()  # fmt: skip
                card_keys = [derive_card_key(bytes(site[0]), raw)] if site else []
    rows: list[dict[str, Any]] = []
    total = 0
    if not errors and shown:
        active = {"active": True, "inactive": False}.get(form["status"])
        where = domain.list_filter(conn, user, school=shown, class_id=class_id,
                                   kind=kind or None, active=active, name=q,
                                   card_keys=card_keys)  # fmt: skip
        total, rows = store.page(conn, "people", where, order="full_name, id",
                                 limit=PAGE_SIZE, offset=start)  # fmt: skip
    classes = _classes(conn, shown)
    names = dict(classes)
    for r in rows:
        r["class_name"] = names.get(str(r["class_id"]), "") if r["class_id"] else ""
    query = {k: v for k, v in form.items() if v and not (k == "status" and v == "active")}
    more = start + PAGE_SIZE < total and start + PAGE_SIZE <= MAX_OFFSET
    next_url = "/people?" + urlencode({**query, "offset": start + PAGE_SIZE}) if more else None
    prev_url = ("/people?" + urlencode({**query, "offset": max(0, start - PAGE_SIZE)})
                if start else None)  # fmt: skip
    return render(request, "people.html", lang, user=user, nav=_nav(user), schools=schools,
                  school=shown, form=form, rows=rows, total=total, start=start,
                  classes=classes, errors=errors, next_url=next_url, prev_url=prev_url,
                  KINDS=KINDS, uid_search=user.role in UID_SEARCHERS)  # fmt: skip


def _classes(conn: ConnDep, school_id: str | None) -> list[tuple[str, str]]:
    if school_id is None:
        return []
    rows = conn.execute(
        "SELECT id, name FROM classes WHERE school_id = %s ORDER BY name", (school_id,)
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _month(value: str | None) -> date | None:
    if not value:
        return None
    try:
        year, month = value.split("-")
        return date(int(year), int(month), 1)
    except ValueError:
        return None


def person_response(
    request: Request,
    conn: ConnDep,
    user: Principal,
    person_id: int,
    *,
    month: str | None = None,
    errors: list[str] | None = None,
    done: str | None = None,
    tap: enrolment.Enrolment | None = None,
    status_code: int = 200,
    erase_reason: str = "",
) -> Response:
    """The person's page (also after a refused change: ``errors``, with its status code)."""
    lang = _lang(request, conn, user)
    try:
        scope.require_person(conn, user, person_id)
    except NotFound:
        return _not_found(request, lang, user)
    view = load(conn, user, person_id, _month(month))
    readers = enrolment.readers(conn, str(view.person["school_id"]))
    cldr = i18n.CLDR[lang]
    month_title = format_date(view.month.first, "LLLL y", locale=cldr) if view.month else ""
    weekdays = [get_day_names("abbreviated", locale=cldr)[i] for i in range(7)]
    pupil = view.person["kind"] == "student" and user.role in student_codes.PRINTERS
    return render(request, "person.html", lang, status_code=status_code, user=user,
                  can_subject_data=user.role in subject_data_pages.SUBJECT_DATA_ROLES,
                  erase_reason=erase_reason,
                  month_title=month_title, weekdays=weekdays, RELATIONS=RELATIONS,
                  nav=_nav(user), v=view, errors=errors or [], done=DONE.get(done or ""),
                  readers=readers, tap=tap, can_enrol=user.role in CARD_WRITERS,
                  can_revoke=user.role in CARD_REVOKERS, can_invite=user.role in INVITERS,
                  KINDS=KINDS, ALLERGEN_NAMES=ALLERGEN_NAMES, METHOD_NAMES=METHOD_NAMES,
                  REVOKE_REASONS=REVOKE_REASONS, ENTRY_KINDS=ENTRY_KINDS,
                  student=student_codes.account_of(conn, person_id) if pupil else None,
                  can_give_access=pupil)  # fmt: skip


@router.get("/people/{person_id}")
def person_page(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    person_id: IdPath,
    month: Annotated[str | None, Query(max_length=7)] = None,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    require_role(user, PEOPLE_ROLES)
    return person_response(request, conn, user, person_id, month=month, done=done)


def _refused(request: Request, conn: ConnDep, user: Principal, person_id: int, message: str,
             status_code: int) -> Response:  # fmt: skip
    conn.rollback()  # a refused change leaves nothing behind
    return person_response(request, conn, user, person_id, errors=[message],
                           status_code=status_code)  # fmt: skip


@router.post("/people/{person_id}/cards")
def add_card(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    person_id: IdPath,
    uid: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """The API's add_card with a typed UID (its key derived with the school's site key)."""
    require_role(user, CARD_WRITERS)
    try:
        scope.require_person(conn, user, person_id)
    except NotFound:
        return _not_found(request, _lang(request, conn, user), user)
    try:
        uid_hex = formats.card_uid_hex(uid)
    except ValueError:
        return _refused(request, conn, user, person_id, BAD_UID, 422)
    try:
        domain.add_card(conn, user, person_id, uid_hex=uid_hex, card_key=None)
    except Conflict:
        inactive = not store.get(conn, "people", person_id)["active"]
        return _refused(request, conn, user, person_id,
                        PERSON_INACTIVE if inactive else CARD_TAKEN, 409)  # fmt: skip
    return RedirectResponse(f"/people/{person_id}?done=card_added", status_code=303)


@router.post("/people/{person_id}/cards/{card_key}/revoke")
def revoke_card(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    person_id: IdPath,
    card_key: str,
    reason: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """The API's revoke (audited), for a card of this person."""
    require_role(user, CARD_REVOKERS)
    try:
        scope.require_person(conn, user, person_id)
    except NotFound:
        return _not_found(request, _lang(request, conn, user), user)
    owner = conn.execute("SELECT person_id FROM cards WHERE card_key = %s", (card_key,)).fetchone()
    if owner is None or int(owner[0]) != person_id:
        return _not_found(request, _lang(request, conn, user), user)
    if reason not in REVOKE_REASONS:
        return _refused(request, conn, user, person_id, N_("Say why the card is revoked."), 422)
    try:
        domain.revoke_card(conn, user, card_key, reason)
    except Conflict:
        return _refused(request, conn, user, person_id,
                        N_("This card is already revoked."), 409)  # fmt: skip
    return RedirectResponse(f"/people/{person_id}?done=card_revoked", status_code=303)


def install(app: FastAPI) -> None:
    """The people pages and the tap enrolment (cloud/console/enrol_tap.py)."""
    from cloud.console import enrol_tap, student_kit

    app.include_router(router)
    app.include_router(enrol_tap.router)
    app.include_router(subject_data_pages.router)  # export, erase (D29-B)
    student_kit.install(app)  # a pupil's password, a class's code slips (D29-E)
