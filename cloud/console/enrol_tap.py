"""Enrol a card by tapping it at a reader (issue #15, D28-A): the admin picks a reader of the
person's school and presses "Enrol by tap"; the page then asks every second (htmx) whether an
unknown card was tapped there since, counting down the minute it waits; the card found is added
on "Confirm" by the same function as a typed UID (cloud/domain/enrolment.py).

Without JavaScript the same routes answer whole pages (the person's page with the wait in it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.api.models import IdPath
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.people import CARD_TAKEN, CARD_WRITERS, PERSON_INACTIVE, person_response
from cloud.console.web import render
from cloud.domain import enrolment
from cloud.domain.errors import Conflict, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])


def _answer(request: Request, conn: ConnDep, user: Principal, person_id: int,
            tap: enrolment.Enrolment) -> Response:  # fmt: skip
    if request.headers.get("hx-request") == "true":
        lang = _lang(request, conn, user)
        return render(request, "_enrol_tap.html", lang, user=user, tap=tap, person_id=person_id)
    return person_response(request, conn, user, person_id, tap=tap)


def _in_scope(request: Request, conn: ConnDep, user: Principal, person_id: int) -> bool:
    try:
        scope.require_person(conn, user, person_id)
    except NotFound:
        return False
    return True


def _not_found(request: Request, conn: ConnDep, user: Principal) -> Response:
    lang = _lang(request, conn, user)
    return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))


@router.post("/people/{person_id}/enrol-tap")
def start(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    person_id: IdPath,
    device: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    require_role(user, CARD_WRITERS)
    if not _in_scope(request, conn, user, person_id):
        return _not_found(request, conn, user)
    try:
        tap = enrolment.start(conn, user, person_id, device)
    except NotFound:
        conn.rollback()
        return person_response(request, conn, user, person_id, status_code=422,
                               errors=[N_("Pick a reader of the school.")])  # fmt: skip
    except Conflict:
        conn.rollback()
        return person_response(request, conn, user, person_id, status_code=409,
                               errors=[PERSON_INACTIVE])  # fmt: skip
    return _answer(request, conn, user, person_id, tap)


@router.get("/people/{person_id}/enrol-tap/{enrolment_id}")
def look(
    request: Request, conn: ConnDep, user: ConsoleUser, person_id: IdPath, enrolment_id: IdPath
) -> Response:
    require_role(user, CARD_WRITERS)
    if not _in_scope(request, conn, user, person_id):
        return _not_found(request, conn, user)
    try:
        tap = enrolment.look(conn, person_id, enrolment_id)
    except NotFound:
        return _not_found(request, conn, user)
    return _answer(request, conn, user, person_id, tap)


@router.post("/people/{person_id}/enrol-tap/{enrolment_id}/confirm")
def confirm(
    request: Request, conn: ConnDep, user: ConsoleUser, person_id: IdPath, enrolment_id: IdPath
) -> Response:
    require_role(user, CARD_WRITERS)
    if not _in_scope(request, conn, user, person_id):
        return _not_found(request, conn, user)
    try:
        enrolment.confirm(conn, user, person_id, enrolment_id)
    except NotFound:
        return _not_found(request, conn, user)
    except Conflict:
        conn.rollback()
        tap = enrolment.look(conn, person_id, enrolment_id)
        message = {"taken": CARD_TAKEN, "found": PERSON_INACTIVE}.get(
            tap.state, N_("There is no tapped card to add.")
        )
        return person_response(request, conn, user, person_id, tap=tap, status_code=409,
                               errors=[message])  # fmt: skip
    return RedirectResponse(f"/people/{person_id}?done=card_added", status_code=303)
