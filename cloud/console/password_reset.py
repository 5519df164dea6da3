"""Forgot password (console /forgot and the parents' app /app/{lang}/forgot), the reset link's
page (/reset/{token}) and invitations sent by e-mail from /guardians (D28-B).

Asking for a link answers the same whether or not the address is an account (no enumeration)
and is throttled per address and per client (cloud/auth/password_reset.py). The mail goes out
through the outbox (cloud/mail/queue.py) in the account's language. Without SMTP settings the
pages say that e-mail is not set up and send nothing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from cloud.api.auth import client_address
from cloud.api.deps import ConnDep, LoginThrottleDep, SettingsDep
from cloud.api.invitations import link as invitation_link
from cloud.api.models import IdPath
from cloud.auth import invitations
from cloud.auth import password_reset as resets
from cloud.console import email_texts, i18n
from cloud.console.guard import LANG_COOKIE, ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.invitations import INVITERS
from cloud.console.pages import _lang, _nav
from cloud.console.web import language, render
from cloud.domain.errors import NotFound
from cloud.mail.queue import enqueue

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
SENT = N_("If an account has this e-mail address, a link to set a new password is on its way"
          " to it. The link works for one hour.")  # fmt: skip
TOO_MANY = N_("Too many requests. Try again in %(s)s seconds.")
PROBLEM_TEXT = {
    "unknown": N_("This link is not valid. Ask for a new one."),
    "used": N_("This link has already been used. Ask for a new one if you need it."),
    "expired": N_("This link has expired: it works for one hour. Ask for a new one."),
    "revoked": N_("A newer link was sent after this one: use the newest e-mail."),
}


def _no_referrer(response: Response) -> Response:
    """The link's token is in the reset page's URL: no Referer carries it anywhere."""
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def pupil_login(email: str) -> bool:
    """A pupil's login (``<id>@<school>.pupil``, D28-O): no mailbox answers for it, and the
    school, not a mail, gives the pupil a new code (D29-E). Decided by its form alone, so the
    answer is the same whether or not such a login exists."""
    return email.strip().lower().endswith(".pupil")


def _ask(request: Request, conn: ConnDep, settings: SettingsDep, throttle: LoginThrottleDep,
         email: str, lang: str) -> int:  # fmt: skip
    """Ask for a link for ``email``: the seconds to wait when throttled, else 0."""
    if not settings.email_ready or pupil_login(email):
        return 0
    wait = resets.throttled(conn, throttle, email, client_address(request))
    if wait:
        return wait
    account = resets.account_for(conn, email)
    if account is not None and account.role != "student":  # a pupil's code is the school's
        token = resets.create(conn, account)
        mail_lang = i18n.pick(account.locale, lang)
        url = f"{str(request.base_url).rstrip('/')}/reset/{token}?lang={mail_lang}"
        subject, body = email_texts.reset(mail_lang, account.email, url)
        enqueue(conn, account.email, subject, body, mail_lang, "password_reset", account.id)
    return 0


def _answer(request: Request, template: str, lang: str, ready: bool, email: str,
            wait: int) -> Response:  # fmt: skip
    """The same page whether or not the address is an account; a 429 only when throttled. A
    pupil's login is refused by its form (nothing looked up, nothing mailed)."""
    error = i18n.gettext(lang, TOO_MANY) % {"s": wait} if wait else None
    pupil = pupil_login(email)
    response = render(request, template, lang, status_code=429 if wait else 200,
                      email=email[:254], error=error, sent=not wait and not pupil, ready=ready,
                      page=None, pupil=pupil)  # fmt: skip
    if wait:
        response.headers["Retry-After"] = str(wait)
    return response


# ---- the console -----------------------------------------------------------------------------
@router.get("/forgot")
def forgot_form(request: Request, settings: SettingsDep) -> Response:
    return render(request, "forgot.html", language(request), email="", error=None, sent=False,
                  ready=settings.email_ready)  # fmt: skip


@router.post("/forgot")
def forgot(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
    email: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    lang = language(request)
    wait = _ask(request, conn, settings, throttle, email, lang)
    return _answer(request, "forgot.html", lang, settings.email_ready, email, wait)


# ---- the parents' app ------------------------------------------------------------------------
def _app_lang(lang: str) -> str:
    if lang not in i18n.LANGUAGES:
        raise NotFound("no such language")
    return lang


@router.get("/app/{lang}/forgot")
def app_forgot_form(request: Request, settings: SettingsDep, lang: str) -> Response:
    return render(request, "app_forgot.html", _app_lang(lang), email="", error=None, sent=False,
                  ready=settings.email_ready, page=None)  # fmt: skip


@router.post("/app/{lang}/forgot")
def app_forgot(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
    lang: str,
    email: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    lang = _app_lang(lang)
    wait = _ask(request, conn, settings, throttle, email, lang)
    return _answer(request, "app_forgot.html", lang, settings.email_ready, email, wait)


# ---- the link --------------------------------------------------------------------------------
def _reset_page(request: Request, lang: str, opened: resets.Opened, token: str,
                **ctx: Any) -> Response:  # fmt: skip
    app = opened.account is not None and opened.account.role == "guardian"
    values: dict[str, Any] = {"layout": "app_base.html" if app else "base.html", "app": app,
                              "token": token, "error": None, "done": False, "problem": None,
                              "page": None, "email": opened.account.email if opened.account
                              else ""}  # fmt: skip
    values.update(ctx)
    status = 200
    if opened.problem is not None:
        values["problem"] = i18n.gettext(lang, PROBLEM_TEXT[opened.problem])
        status = 404 if opened.problem == "unknown" else 410
    return _no_referrer(render(request, "reset.html", lang, status_code=status, **values))


def _link_lang(request: Request, opened: resets.Opened, wanted: str | None) -> str:
    stored = opened.account.locale if opened.account else None
    return i18n.pick(wanted, request.cookies.get(LANG_COOKIE), stored,
                     accept_language=request.headers.get("accept-language", ""))  # fmt: skip


@router.get("/reset/{token}")
def reset_form(
    request: Request,
    conn: ConnDep,
    token: str,
    lang: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    opened = resets.open_link(conn, token)
    return _reset_page(request, _link_lang(request, opened, lang), opened, token)


@router.post("/reset/{token}")
def reset(
    request: Request,
    conn: ConnDep,
    token: str,
    lang: Annotated[str, Form(max_length=8)] = "",
    new: Annotated[str, Form(max_length=2000)] = "",
    repeat: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    opened = resets.open_link(conn, token)
    shown = _link_lang(request, opened, lang)
    if opened.problem is not None:
        return _reset_page(request, shown, opened, token)
    error = None
    if not resets.PASSWORD_MIN <= len(new) <= resets.PASSWORD_MAX:
        error = N_("The new password must be at least 10 characters long.")
    elif new != repeat:
        error = N_("The two new passwords differ.")
    if error is not None:
        return _reset_page(request, shown, opened, token, error=i18n.gettext(shown, error))
    used = resets.use(conn, token, new)
    if used.problem is not None:  # used in another tab meanwhile
        return _reset_page(request, shown, used, token)
    return _reset_page(request, shown, opened, token, done=True)


# ---- invitations by e-mail -------------------------------------------------------------------
@router.post("/guardians/{guardian_id}/invitation/email")
def email_invitation(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    user: ConsoleUser,
    guardian_id: IdPath,
    letter_lang: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """The same one-time link as the printed letter (a new one: older links stop working),
    sent to the guardian's e-mail address in their language."""
    require_role(user, INVITERS)
    page_lang = _lang(request, conn, user)
    ctx: dict[str, Any] = {"user": user, "nav": _nav(user)}
    if not settings.email_ready:
        return render(request, "email_sent.html", page_lang, sent=None, **ctx)
    try:
        inv = invitations.create(conn, user, guardian_id)
    except NotFound:
        return render(request, "not_found.html", page_lang, status_code=404, **ctx)
    lang = i18n.pick(letter_lang, inv.locale, page_lang)
    url = invitation_link(request, inv.token) + f"?lang={lang}"
    school = conn.execute(
        "SELECT name FROM schools WHERE id = %s", (user.school_id,)
    ).fetchone() if user.school_id else None  # fmt: skip
    subject, body = email_texts.invitation(lang, inv.full_name, school[0] if school else "",
                                           inv.email, url, inv.expires_at)  # fmt: skip
    enqueue(conn, inv.email, subject, body, lang, "invitation", inv.guardian_id)
    return render(request, "email_sent.html", page_lang, sent=inv.email, **ctx)


def install(app: Any) -> None:
    app.include_router(router)
