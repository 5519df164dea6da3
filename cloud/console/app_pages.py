"""The parents' app (issue #16, first slice; D27-F): sign-in, the invitation link, and each
child's feed of arrivals, departures and meals. Pages live under ``/app/{lang}/`` so that the
service worker, which keeps pages by URL, never shows one language's copy to another
(research/ui.md pitfall 3). Reads go through the API's scope and query functions
(cloud/auth/scope.py, cloud/api/events.py ``events_in_scope``): a guardian sees their children
only, and any other child is "not found"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api import event_cursor
from cloud.api.auth import attempt, client_address
from cloud.api.deps import ConnDep, LoginThrottleDep, SettingsDep
from cloud.api.events import EventFilter, EventOut, events_in_scope
from cloud.auth import invitations, scope, sessions
from cloud.auth.principal import Principal
from cloud.console import app_nav, i18n
from cloud.console.guard import COOKIE, LANG_COOKIE, check_csrf, session_user
from cloud.console.i18n import N_
from cloud.console.web import language, render
from cloud.domain.errors import NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
app_nav.register("", N_("Feed"), 10, app_nav.BOTH)
PAGE_SIZE = 20
YEAR = 365 * 24 * 3600
# what a tap at each reader means to a parent
HAPPENED = {"in": N_("Arrived"), "out": N_("Left"), "canteen": N_("Meal")}


class AppSignIn(Exception):
    """No guardian session: the app's sign-in page, in the path's language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang


def _lang_of_path(lang: str) -> str:
    if lang not in i18n.LANGUAGES:
        raise NotFound("no such language")
    return lang


def guardian(request: Request, conn: ConnDep, lang: str) -> Principal:
    _lang_of_path(lang)
    user = session_user(request, conn)
    if user is None or user.role != "guardian":
        raise AppSignIn(_lang_of_path(lang))
    return user


Guardian = Annotated[Principal, Depends(guardian)]


def app_user(request: Request, conn: ConnDep, lang: str) -> Principal:
    """A guardian, or a student (D28-O), for the pages that show both their own "children"
    (a student's is themself): feed, menu, money, statistics."""
    _lang_of_path(lang)
    user = session_user(request, conn)
    if user is None or user.role not in app_nav.BOTH:
        raise AppSignIn(_lang_of_path(lang))
    return user


AppUser = Annotated[Principal, Depends(app_user)]


@dataclass(frozen=True)
class Child:
    id: int
    name: str
    school: str
    zone: str


# how a person was identified without a card (events.method, D29-J), as the feed says it
METHODS = {"qr": N_("by QR code"), "pin": N_("by PIN")}


@dataclass(frozen=True)
class FeedItem:
    happened: str
    reader: str
    granted: bool
    reason: str
    when: str  # the exact date and time in the school's zone, in the page's language
    iso: str
    day: str = ""  # the school's local date (ISO): a meal's "Rate" opens that day's menu
    how: str = ""  # "by QR code" / "by PIN" when not by a card (D29-J); empty for a card


def children(conn: ConnDep, user: Principal) -> list[Child]:
    """A guardian's children; a student's own person, while a pupil (D28-O)."""
    if user.role == "student":
        rows = conn.execute(
            "SELECT pe.id, pe.full_name, s.name, s.timezone FROM student_accounts a"
            " JOIN people pe ON pe.id = a.person_id JOIN schools s ON s.id = pe.school_id"
            " WHERE a.user_id = %s AND pe.active",
            (user.user_id,),
        ).fetchall()
        return [Child(*r) for r in rows]
    rows = conn.execute(
        "SELECT pe.id, pe.full_name, s.name, s.timezone FROM guardian_students g"
        " JOIN people pe ON pe.id = g.person_id JOIN schools s ON s.id = pe.school_id"
        " WHERE g.guardian_id = %s ORDER BY pe.full_name, pe.id",
        (user.user_id,),
    ).fetchall()
    return [Child(*r) for r in rows]


def exact(value: datetime, zone: str, lang: str) -> str:
    """'7 December 2026, 08:12' in the school's zone (the corrected clock's time)."""
    try:
        tz = ZoneInfo(zone)
    except (KeyError, ValueError):
        tz = i18n.ZONE
    return format_datetime(value.astimezone(tz), "d MMMM y, HH:mm", locale=i18n.CLDR[lang])


def _item(e: EventOut, zone: str, lang: str) -> FeedItem:
    reason = i18n.REASON_NAMES.get(e.reason, e.reason)
    when = e.occurred_at_corrected
    return FeedItem(
        happened=i18n.gettext(lang, HAPPENED.get(e.reader, N_("Tap"))),
        reader=e.reader, granted=e.result == "granted",
        reason=i18n.gettext(lang, reason) if e.reason in i18n.REASON_NAMES else e.reason,
        when=exact(when, zone, lang), iso=when.isoformat(), day=_local_day(when, zone),
        how=i18n.gettext(lang, METHODS[e.method]) if e.method in METHODS else "",
    )  # fmt: skip


def _local_day(value: datetime, zone: str) -> str:
    try:
        tz = ZoneInfo(zone)
    except (KeyError, ValueError):
        tz = i18n.ZONE
    return value.astimezone(tz).date().isoformat()


def _store_lang(conn: ConnDep, user: Principal, lang: str) -> None:
    conn.execute("UPDATE users SET locale = %s WHERE id = %s AND locale IS DISTINCT FROM %s",
                 (lang, user.user_id, lang))  # fmt: skip


@router.get("/app")
@router.get("/app/")
def app_home(
    request: Request, conn: ConnDep, child: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None
) -> Response:
    """The app in the account's language (a notification's link names no language)."""
    user = session_user(request, conn)
    stored = None
    if user is not None:
        row = conn.execute("SELECT locale FROM users WHERE id = %s", (user.user_id,)).fetchone()
        stored = row[0] if row else None
    lang = language(request, user_locale=stored)
    rest = "?" + urlencode({"child": child}) if child else ""
    return RedirectResponse(f"/app/{lang}/{rest}", status_code=303)


@router.get("/app/{lang}/")
def feed(
    request: Request,
    conn: ConnDep,
    lang: str,
    user: AppUser,
    child: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    kids = children(conn, user)
    ctx: dict[str, Any] = {"user": user, "children": kids, "app_lang_path": "/"}
    if child is None and kids:
        child = kids[0].id
    if child is None:
        return render(request, "app_feed.html", lang, shown=None, items=[], **ctx)
    try:
        scope.require_person(conn, user, child)
    except NotFound:
        return render(request, "app_not_found.html", lang, status_code=404, **ctx)
    shown = next(k for k in kids if k.id == child)
    after = None
    if cursor:
        try:
            after = event_cursor.decode(cursor)
        except ValueError:
            return render(request, "app_not_found.html", lang, status_code=404, **ctx)
    _, events, next_cursor = events_in_scope(
        conn, user, EventFilter(person=child), after, PAGE_SIZE
    )
    items = [_item(e, shown.zone, lang) for e in events]
    here = {"child": child}
    older = f"/app/{lang}/?" + urlencode({**here, "cursor": next_cursor}) if next_cursor else None
    return render(request, "app_feed.html", lang, shown=shown, items=items, older=older,
                  first_page=cursor is None, refresh_url=f"/app/{lang}/?" + urlencode(here),
                  page="", child_id=child, **ctx)  # fmt: skip


@router.get("/app/{lang}/offline")
def offline(request: Request, lang: str) -> Response:
    """The shell shown by the service worker when a page it never kept is opened offline."""
    return render(request, "app_offline.html", _lang_of_path(lang), page="offline")


@router.get("/app/{lang}/login")
def login_form(request: Request, lang: str) -> Response:
    return render(
        request, "app_login.html", _lang_of_path(lang), email="", error=None, page="login"
    )


@router.post("/app/{lang}/login")
def login(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
    lang: str,
    email: Annotated[str, Form(max_length=1000)] = "",
    password: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    lang = _lang_of_path(lang)
    got = attempt(conn, settings, throttle, client_address(request), email, password)

    def again(error: str, status: int = 200) -> Response:
        return render(request, "app_login.html", lang, status_code=status, email=email[:254],
                      error=i18n.gettext(lang, error), page="login")  # fmt: skip

    if got.retry_after:
        response = again(N_("Too many failed attempts. Try again later."), 429)
        response.headers["Retry-After"] = str(got.retry_after)
        return response
    if got.token is None:
        return again(N_("Wrong login or password."))
    principal = sessions.principal_for(conn, got.token)
    if principal is None or principal.role not in app_nav.BOTH:
        sessions.logout(conn, got.token)  # staff use the console
        return again(N_("This app is for parents and guardians. School staff use the console."))
    _store_lang(conn, principal, lang)
    response = RedirectResponse(f"/app/{lang}/", status_code=303)
    signed_in(response, got.token, settings.session_ttl_s, lang)
    return response


def signed_in(response: Response, token: str, max_age: int, lang: str) -> None:
    response.set_cookie(
        COOKIE, token, max_age=max_age, httponly=True, secure=True, samesite="lax", path="/"
    )
    response.set_cookie(LANG_COOKIE, lang, max_age=YEAR, samesite="lax", path="/")


@router.post("/app/{lang}/logout")
def logout(request: Request, conn: ConnDep, lang: str) -> Response:
    lang = _lang_of_path(lang)
    token = request.cookies.get(COOKIE)
    if token:
        sessions.logout(conn, token)
    response = RedirectResponse(f"/app/{lang}/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    # the service worker's copies of the feed hold children's names (research/ui.md pitfall 3)
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


@router.post("/app/{lang}/language")
def switch_language(
    request: Request,
    conn: ConnDep,
    lang: str,
    to: Annotated[str, Form(max_length=8)] = "",
    page: Annotated[str, Form(max_length=10)] = "",
    child: Annotated[int | None, Form(ge=1, le=2**63 - 1)] = None,
) -> Response:
    """Another language: the same page under its path; kept on the account when signed in."""
    _lang_of_path(lang)
    to = _lang_of_path(to)
    user = session_user(request, conn)
    if user is not None and user.role in app_nav.BOTH:
        _store_lang(conn, user, to)
    signed_out = page in ("login", "offline", "code")  # code: a pupil's sign-in (D28-O)
    # the same tab (cloud/console/app_nav.py) under the other language
    rest = page if signed_out or page in {s for s, _ in app_nav.tabs()} else ""
    if child is not None and not signed_out:
        rest += "?" + urlencode({"child": child})
    response = RedirectResponse(f"/app/{to}/{rest}", status_code=303)
    response.set_cookie(LANG_COOKIE, to, max_age=YEAR, samesite="lax", path="/")
    return response


# ---- the invitation link ---------------------------------------------------------------------
PROBLEM_TEXT = {
    "unknown": N_("This invitation link is not valid. Ask the school for a new one."),
    "used": N_("This invitation link has already been used. Sign in with your password, or"
               " ask the school for a new link."),
    "expired": N_("This invitation link has expired. Ask the school for a new one."),
    "revoked": N_("This invitation link was replaced by a newer one. Use the newest letter"
                  " from the school."),
}  # fmt: skip


def _no_referrer(response: Response) -> Response:
    """The link's token is in these pages' URL: no Referer carries it anywhere."""
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _invite_lang(request: Request, opened: invitations.Opened, wanted: str | None) -> str:
    return i18n.pick(wanted, request.cookies.get(LANG_COOKIE), opened.locale,
                     accept_language=request.headers.get("accept-language", ""))  # fmt: skip


def _refused(request: Request, lang: str, opened: invitations.Opened) -> Response:
    assert opened.problem is not None
    status = 404 if opened.problem == "unknown" else 410
    return _no_referrer(render(request, "app_invite_bad.html", lang, status_code=status,
                  message=i18n.gettext(lang, PROBLEM_TEXT[opened.problem]), page=None))  # fmt: skip


@router.get("/app/invite/{token}")
def invite_form(
    request: Request, conn: ConnDep, token: str,
    lang: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:  # fmt: skip
    opened = invitations.open_link(conn, token)
    shown = _invite_lang(request, opened, lang)
    if opened.problem is not None:
        return _refused(request, shown, opened)
    return _no_referrer(render(request, "app_invite.html", shown, email=opened.email,
                               token=token, error=None, page=None))  # fmt: skip


@router.post("/app/invite/{token}")
def invite_accept(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    token: str,
    lang: Annotated[str, Form(max_length=8)] = "",
    password: Annotated[str, Form(max_length=2000)] = "",
    repeat: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    opened = invitations.open_link(conn, token)
    shown = _invite_lang(request, opened, lang)
    if opened.problem is not None:
        return _refused(request, shown, opened)
    error = None
    if not invitations.PASSWORD_MIN <= len(password) <= invitations.PASSWORD_MAX:
        error = N_("The new password must be at least 10 characters long.")
    elif password != repeat:
        error = N_("The two new passwords differ.")
    if error is not None:
        message = i18n.gettext(shown, error)
        return _no_referrer(render(request, "app_invite.html", shown, email=opened.email,
                                   token=token, error=message, page=None))  # fmt: skip
    opened, session = invitations.accept(conn, token, password, settings.session_ttl_s)
    if session is None:  # used in another tab meanwhile
        return _refused(request, shown, opened)
    conn.execute("UPDATE users SET locale = %s WHERE id = %s", (shown, opened.guardian_id))
    response = RedirectResponse(f"/app/{shown}/", status_code=303)
    signed_in(response, session, settings.session_ttl_s, shown)
    return response


def _to_sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppSignIn)
    return RedirectResponse(f"/app/{exc.lang}/login", status_code=303)


def install(app: Any) -> None:
    """The parents' app, its shell (manifest, service worker, push), the console's guardians
    page and the API's invitation route (D27-F)."""
    from cloud.api import invitations as invitations_api
    from cloud.console import app_shell
    from cloud.console import invitations as invitations_page

    app.add_exception_handler(AppSignIn, _to_sign_in)
    app.include_router(invitations_api.router)
    app.include_router(app_shell.router)  # before /app/{lang}/: /app/push/... are its own
    app.include_router(router)
    app.include_router(invitations_page.router)
