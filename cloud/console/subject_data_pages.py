"""A data subject's requests on the console's person page (issue #18, D28-K, D29-B): download
everything held about the person as the API's JSON file, and erase their personal data with a
stated reason and an explicit confirmation. Who may, and what happens, is the API's
(cloud/api/subject_data.py: the same role alias, scope check and domain functions), so both
are audited the same way; the console adds the reason to the erasure's audit row."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep, SchoolAdmin, roles_of
from cloud.api.models import IdPath
from cloud.auth import scope
from cloud.console.guard import CONSOLE_ROLES, ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.web import render
from cloud.domain import people as people_domain
from cloud.domain import store, subject_data
from cloud.domain.errors import Conflict, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])

# GET /api/v1/people/{id}/export and POST /api/v1/people/{id}/erase
# and DELETE /api/v1/people/{id} (the deactivation an erasure needs first): the same alias
SUBJECT_DATA_ROLES = tuple(r for r in roles_of(SchoolAdmin) if r in CONSOLE_ROLES)
REASON_MIN, REASON_MAX = 5, 500
DEACTIVATED = N_(
    "The person is deactivated and their cards are revoked. Readers refuse them from their next"
    " list."
)
ERASED = N_(
    "The person's personal data is erased. Taps, meals and payments stay under their number only."
)
REASON_MISSING = N_("Say why the data is erased (at least 5 characters): whose request, and when.")
REASON_NAMES = N_("The reason must not name the person: it is kept after the erasure.")
NOT_CONFIRMED = N_("Tick the box to confirm that the erasure cannot be undone.")
STILL_ACTIVE = N_("Deactivate the person first: erasure cannot be undone.")
ALREADY = N_("This person's data is already erased.")
NO_RULE = N_(
    "Erasure is refused: a table holding this person's data has no erasure rule yet. Tell the"
    " platform operator."
)


def _not_found(request: Request, conn: ConnDep, user: ConsoleUser) -> Response:
    lang = _lang(request, conn, user)
    return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))


@router.post("/people/{person_id}/export")
def export_person(
    request: Request, conn: ConnDep, user: ConsoleUser, person_id: IdPath
) -> Response:
    """The person's data as the API's export gives it, as a download (audited). A POST: the
    export is an audited act, not a page to revisit."""
    require_role(user, SUBJECT_DATA_ROLES)
    try:
        scope.require_person(conn, user, person_id)
    except NotFound:
        return _not_found(request, conn, user)
    doc = subject_data.export(conn, user, person_id)
    return Response(
        json.dumps(doc, ensure_ascii=False, indent=1, default=str),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="person-{person_id}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/people/{person_id}/deactivate")
def deactivate_person(
    request: Request, conn: ConnDep, user: ConsoleUser, person_id: IdPath
) -> Response:
    """The API's DELETE /people/{id}: the person leaves (cards revoked, audited); an erasure
    needs it first. Deactivating twice changes nothing more."""
    require_role(user, SUBJECT_DATA_ROLES)
    try:
        scope.require_person(conn, user, person_id)
    except NotFound:
        return _not_found(request, conn, user)
    people_domain.deactivate(conn, user, person_id)
    return RedirectResponse(f"/people/{person_id}?done=deactivated", status_code=303)


def _names_the_person(reason: str, person: dict[str, object]) -> bool:
    text = reason.casefold()
    names = [str(person.get("full_name") or ""), str(person.get("external_id") or "")]
    names += str(person.get("full_name") or "").split()  # a first or family name alone
    return any(len(n) >= 3 and n.casefold() in text for n in names)


@router.post("/people/{person_id}/erase")
def erase_person(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    person_id: IdPath,
    reason: Annotated[str, Form(max_length=2000)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Erase after the checks the page asks for; a refusal shows the page again with what to
    fix and changes nothing."""
    from cloud.console.people import person_response

    require_role(user, SUBJECT_DATA_ROLES)
    try:
        scope.require_person(conn, user, person_id)
    except NotFound:
        return _not_found(request, conn, user)
    reason = " ".join(reason.split())
    problem, status = None, 422
    if not REASON_MIN <= len(reason) <= REASON_MAX:
        problem = REASON_MISSING
    elif _names_the_person(reason, store.get(conn, "people", person_id)):
        problem = REASON_NAMES
    elif confirm != "yes":
        problem = NOT_CONFIRMED
    else:
        try:
            subject_data.erase(conn, user, person_id, reason=reason)
        except Conflict as e:
            text = str(e)
            problem = ALREADY if "already" in text else NO_RULE if "rule" in text else STILL_ACTIVE
            status = 409
    if problem is not None:
        conn.rollback()
        return person_response(request, conn, user, person_id, errors=[problem],
                               status_code=status, erase_reason=reason)  # fmt: skip
    return RedirectResponse(f"/people/{person_id}?done=erased", status_code=303)
