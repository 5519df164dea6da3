"""A student's way in (issue #16 "For a student", D28-O): the console's "Give a sign-in code"
on a pupil's page prints a slip with their login and a one-time code; the app's code page
takes the code once, with a new password, and signs the pupil in. The rules are in
cloud/auth/student_codes.py; code guesses are throttled per address like passwords
(cloud/auth/throttle.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.auth import client_address
from cloud.api.deps import ConnDep, LoginThrottleDep, SettingsDep
from cloud.api.models import IdPath
from cloud.auth import student_codes
from cloud.auth.invitations import PASSWORD_MAX, PASSWORD_MIN
from cloud.console import i18n
from cloud.console.app_pages import _lang_of_path, signed_in
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.web import render
from cloud.domain.errors import NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
THROTTLE_ACCOUNT = "student-code"  # one bucket: the client's address is what is limited
CODE_PROBLEMS = {
    "unknown": N_("This code is not valid. Check it, or ask the school for a new one."),
    "used": N_("This code has already been used. Sign in with your login and password."),
    "expired": N_("This code has expired. Ask the school for a new one."),
    "revoked": N_("This code was replaced by a newer one. Use the newest slip from the school."),
}  # fmt: skip


@router.post("/people/{person_id}/student-code")
def print_code(request: Request, conn: ConnDep, user: ConsoleUser, person_id: IdPath) -> Response:
    """A new code slip for the pupil (their account made on the first); the older code stops
    working. Another school's pupil, a staff member or no one: "not found"."""
    require_role(user, student_codes.PRINTERS)
    lang = _lang(request, conn, user)
    try:
        slip = student_codes.create(conn, user, person_id)
    except NotFound:
        conn.rollback()
        return render(request, "not_found.html", lang, status_code=404, user=user,
                      nav=_nav(user))  # fmt: skip
    return render(request, "student_slip.html", lang, user=user, nav=_nav(user), slip=slip,
                  person_id=person_id)  # fmt: skip


def _code_form(request: Request, lang: str, error: str | None = None, code: str = "",
               status_code: int = 200) -> Response:  # fmt: skip
    message = i18n.gettext(lang, error) if error else None
    response = render(request, "app_code.html", lang, status_code=status_code, error=message,
                      code=code[:20], page="code")  # fmt: skip
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/app/{lang}/code")
def code_form(request: Request, lang: str) -> Response:
    return _code_form(request, _lang_of_path(lang))


@router.post("/app/{lang}/code")
def code_sign_in(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
    lang: str,
    code: Annotated[str, Form(max_length=40)] = "",
    password: Annotated[str, Form(max_length=2000)] = "",
    repeat: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    lang = _lang_of_path(lang)
    client = client_address(request)
    bound = throttle.bind(conn)
    bound.lock_account(THROTTLE_ACCOUNT)
    wait = bound.retry_after(THROTTLE_ACCOUNT, client)
    if wait:
        bound.refused(client)
        response = _code_form(request, lang, N_("Too many failed attempts. Try again later."),
                              code, 429)  # fmt: skip
        response.headers["Retry-After"] = str(wait)
        return response
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return _code_form(request, lang, N_("The new password must be at least 10 characters"
                                            " long."), code, 422)  # fmt: skip
    if password != repeat:
        return _code_form(request, lang, N_("The two new passwords differ."), code, 422)
    got = student_codes.redeem(conn, code, password, settings.session_ttl_s)
    if got.problem is not None or got.session is None:
        bound.failed(None, client)  # counted, and kept: the answer does not roll back
        problem = got.problem or "unknown"
        return _code_form(request, lang, CODE_PROBLEMS[problem], code, 422)
    conn.execute("UPDATE users SET locale = %s WHERE email = %s", (lang, got.login))
    response = RedirectResponse(f"/app/{lang}/", status_code=303)
    signed_in(response, got.session, settings.session_ttl_s, lang)
    return response


def install(app: Any) -> None:
    from cloud.console import app_learning, learning_page

    app.include_router(router)
    app.include_router(app_learning.router)
    app.include_router(learning_page.router)  # the console's editor of the list (D29-E)
