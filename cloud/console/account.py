"""Signing in and out of the console, the password change and the language switch.

Sign-in goes through the API's own login (cloud/api/auth.py ``attempt``: argon2, the throttle of
D24-D, the audit rows); the session token it issues is kept in an HttpOnly cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.auth import attempt, client_address
from cloud.api.deps import ConnDep, LoginThrottleDep, SettingsDep
from cloud.auth import sessions
from cloud.auth.passwords import hash_password, verify_password
from cloud.console import i18n, nav
from cloud.console.guard import (
    CONSOLE_ROLES,
    COOKIE,
    LANG_COOKIE,
    ConsoleUser,
    check_csrf,
    safe_next,
    session_user,
)
from cloud.console.i18n import N_
from cloud.console.web import language, render
from cloud.domain.store import audit

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
PASSWORD_MIN = 10  # as the API's user creation (cloud/api/users.py)
PASSWORD_MAX = 1024
YEAR = 365 * 24 * 3600


def _user_locale(conn: ConnDep, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    row = conn.execute("SELECT locale FROM users WHERE id = %s", (user_id,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def _set_session(response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE, token, max_age=max_age, httponly=True, secure=True, samesite="lax", path="/"
    )


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    lang = language(request)
    return render(request, "login.html", lang, next=safe_next(next), email="", error=None)


@router.post("/login")
def login(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
    email: Annotated[str, Form(max_length=1000)] = "",
    password: Annotated[str, Form(max_length=2000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    lang = language(request)
    got = attempt(conn, settings, throttle, client_address(request), email, password)

    # A form shown again with its message is a 200: the page is the answer, and a browser logs
    # any 4xx of a page as a console error (D27-E). Only the throttle's refusal is a 429.
    def again(error: str, status: int) -> Response:
        return render(request, "login.html", lang, status_code=status,
                      next=safe_next(next), email=email[:254], error=error)  # fmt: skip

    if got.retry_after:
        msg = i18n.gettext(lang, N_("Too many failed sign-ins. Try again in %(s)s seconds."))
        response = again(msg % {"s": got.retry_after}, 429)
        response.headers["Retry-After"] = str(got.retry_after)
        return response
    if got.token is None:
        return again(i18n.gettext(lang, N_("Wrong e-mail or password.")), 200)
    principal = sessions.principal_for(conn, got.token)
    if principal is None or principal.role not in CONSOLE_ROLES:
        sessions.logout(conn, got.token)  # a guardian's: the parents' app, not the console
        return again(i18n.gettext(lang, N_("This console is for school staff.")), 200)
    user_lang = _user_locale(conn, principal.user_id)
    response = RedirectResponse(safe_next(next), status_code=303)
    _set_session(response, got.token, settings.session_ttl_s)
    if user_lang:
        response.set_cookie(LANG_COOKIE, user_lang, max_age=YEAR, samesite="lax", path="/")
    return response


@router.post("/logout")
def logout(request: Request, conn: ConnDep) -> Response:
    token = request.cookies.get(COOKIE)
    principal = session_user(request, conn)
    if token and principal is not None:
        sessions.logout(conn, token)
        audit(conn, principal, "logout", "users", principal.user_id, None, None)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@router.get("/password")
def password_form(request: Request, conn: ConnDep, user: ConsoleUser) -> Response:
    lang = language(request, user_locale=_user_locale(conn, user.user_id))
    return render(
        request, "password.html", lang, user=user, nav=nav.for_user(user), error=None, done=False
    )


@router.post("/password")
def change_password(
    request: Request,
    conn: ConnDep,
    throttle: LoginThrottleDep,
    user: ConsoleUser,
    current: Annotated[str, Form(max_length=2000)] = "",
    new: Annotated[str, Form(max_length=2000)] = "",
    repeat: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """A new password for the signed-in user, after the current one (throttled like a login:
    a stolen session must not guess it). Every other session of the user ends."""
    lang = language(request, user_locale=_user_locale(conn, user.user_id))

    def again(error: str, status: int) -> Response:
        return render(request, "password.html", lang, status_code=status, user=user,
                      nav=nav.for_user(user),
                      error=i18n.gettext(lang, error), done=False)  # fmt: skip

    client = client_address(request)
    bound = throttle.bind(conn)
    bound.lock_account(user.email)
    if bound.retry_after(user.email, client):
        return again(N_("Too many failed attempts. Try again later."), 429)
    row = conn.execute("SELECT password_hash FROM users WHERE id = %s", (user.user_id,)).fetchone()
    if row is None or not verify_password(row[0], current):
        bound.failed(user.email, client)
        return again(N_("The current password is wrong."), 200)
    if not PASSWORD_MIN <= len(new) <= PASSWORD_MAX:
        return again(N_("The new password must be at least 10 characters long."), 200)
    if new != repeat:
        return again(N_("The two new passwords differ."), 200)
    conn.execute(
        "UPDATE users SET password_hash = %s WHERE id = %s", (hash_password(new), user.user_id)
    )
    token = request.cookies.get(COOKIE, "")
    conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL"
        " AND token_hash <> sha256(convert_to(%s, 'UTF8'))",
        (user.user_id, token),
    )
    bound.succeeded(user.email)
    audit(conn, user, "update", "users", user.user_id, None, {"password": "changed"})
    return render(
        request, "password.html", lang, user=user, nav=nav.for_user(user), error=None, done=True
    )


@router.post("/lang")
def switch_language(
    request: Request,
    conn: ConnDep,
    lang: Annotated[str, Form(max_length=8)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    if lang not in i18n.LANGUAGES:
        return render(request, "refused.html", language(request), status_code=422)
    user = session_user(request, conn)
    if user is not None:
        conn.execute("UPDATE users SET locale = %s WHERE id = %s", (lang, user.user_id))
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(LANG_COOKIE, lang, max_age=YEAR, samesite="lax", path="/")
    return response
