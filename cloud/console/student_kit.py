"""What a school does for its pupils' app accounts besides one code slip (issue #16 "For a
student", D29-E): set a pupil's password from their person page, and print a sheet of new code
slips for a whole class. The rules are cloud/domain/student_accounts.py; who may is who may print
a slip (``student_codes.PRINTERS``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.api.models import IdPath
from cloud.auth import student_codes
from cloud.auth.principal import Principal
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav, _school_choice
from cloud.console.people import person_response
from cloud.console.web import render
from cloud.domain import student_accounts
from cloud.domain.errors import NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
PRINTERS = student_codes.PRINTERS
PASSWORD_SHORT = N_("The new password must be at least 10 characters long.")
PASSWORDS_DIFFER = N_("The two new passwords differ.")


def _not_found(request: Request, lang: str, user: Principal) -> Response:
    return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))


@router.post("/people/{person_id}/student-password")
def set_password(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    person_id: IdPath,
    password: Annotated[str, Form(max_length=2000)] = "",
    repeat: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """The school sets the pupil's password; their sessions end, an unused code stops working."""
    require_role(user, PRINTERS)
    try:  # another school's pupil, a staff member or no one: not found, before anything else
        student_accounts.pupil_in_reach(conn, user, person_id)
    except NotFound:
        return _not_found(request, _lang(request, conn, user), user)
    problem = PASSWORDS_DIFFER if password != repeat else None
    if problem is None:
        try:
            student_accounts.set_password(conn, user, person_id, password)
        except student_accounts.BadPassword:
            problem = PASSWORD_SHORT
    if problem is not None:
        conn.rollback()  # nothing changed
        return person_response(request, conn, user, person_id, errors=[problem],
                               status_code=422)  # fmt: skip
    return RedirectResponse(f"/people/{person_id}?done=student_password", status_code=303)


@router.get("/student-slips")
def slips_form(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
    klass: Annotated[str | None, Query(alias="class", max_length=20)] = None,
) -> Response:
    """Choose a class; see its pupils and who has a password already; print."""
    require_role(user, PRINTERS)
    lang = _lang(request, conn, user)
    class_id = int(klass) if klass and klass.isdigit() and 0 < int(klass) < 2**63 else None
    if klass and class_id is None:
        return _not_found(request, lang, user)
    pupils: list[student_accounts.ClassPupil] = []
    class_name = ""
    try:
        if class_id is not None:
            of, class_name, pupils = student_accounts.class_pupils(conn, user, class_id)
            if school and school != of:  # another school was just picked: its classes
                class_id, class_name, pupils = None, "", []
            school = of if class_id is not None else school
        schools, shown = _school_choice(conn, user, school or None)
    except NotFound:
        return _not_found(request, lang, user)
    classes = conn.execute(
        "SELECT id, name FROM classes WHERE school_id = %s ORDER BY name", (shown,)
    ).fetchall() if shown else []  # fmt: skip
    return render(request, "student_slips_pick.html", lang, user=user, nav=_nav(user),
                  schools=schools, school=shown, classes=classes, class_id=class_id,
                  class_name=class_name, pupils=pupils,
                  waiting=sum(not p.has_password for p in pupils))  # fmt: skip


@router.post("/student-slips")
def print_slips(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    class_id: Annotated[int, Form(ge=1, le=2**63 - 1)],
    only_new: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """New codes for the class (each pupil's older code stops working): a sheet to print and
    cut, one slip per pupil. The codes are shown only on this answer."""
    require_role(user, PRINTERS)
    lang = _lang(request, conn, user)
    try:
        school, class_name, slips = student_accounts.class_slips(conn, user, class_id,
                                                                 only_new == "1")  # fmt: skip
    except NotFound:
        conn.rollback()
        return _not_found(request, lang, user)
    response = render(request, "student_slips.html", lang, user=user, nav=_nav(user),
                      slips=slips, class_name=class_name, class_id=class_id,
                      school=school)  # fmt: skip
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def install(app: Any) -> None:
    app.include_router(router)
