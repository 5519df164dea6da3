"""The pages of single sign-on (issue #17 part 1, D29-F): a learning platform sends a person
here, they sign in with their usual qadam account (the same session as the console and the
app), see what the platform will receive and agree, and go back with a code. Sign-out from a
platform (RP-initiated logout) ends the session here too.

Authlib (cloud/oidc/server.py) validates every authorization request before anything is shown:
an unknown client or a redirect URI that is not registered exactly gets an error page here and
never a redirect; other errors go back to the platform as RFC 6749 §4.1.2.1 says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from authlib.oauth2.rfc6749.errors import OAuth2Error
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.auth import attempt, client_address
from cloud.api.deps import ConnDep, LoginThrottleDep, SettingsDep
from cloud.auth import sessions
from cloud.auth.principal import Principal
from cloud.console import i18n
from cloud.console.guard import COOKIE, LANG_COOKIE, check_csrf, session_user
from cloud.console.i18n import N_
from cloud.console.web import render
from cloud.oidc import claims, consents
from cloud.oidc.clients import Client, find
from cloud.oidc.routes import authlib_uri, issuer
from cloud.oidc.server import Provider
from cloud.oidc.server import Request as OidcRequest

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
AUTHORIZE = "/oidc/authorize"
YEAR = 365 * 24 * 3600
# what the consent screen says each scope gives the platform (claims.SCOPE_CLAIMS)
SCOPE_TEXT = {
    "openid": N_("A number that identifies you on this platform only (not your name)"),
    "role": N_("Whether you are a pupil, a parent or school staff"),
    "school": N_("Your school"),
    "class": N_("Your class and grade"),
    "locale": N_("Your language"),
    "offline_access": N_("Staying signed in: the platform may renew its access without asking"),
}
ERROR_TEXT = {
    "client": N_("This platform is not registered with qadam, or it was switched off."),
    "redirect": N_("The platform sent you back to an address it did not register. Nothing was"
                   " shared. Tell the platform's support."),
    "other": N_("The platform's sign-in request is not valid. Nothing was shared."),
    "logout_uri": N_("The platform asked to return to an address it did not register."),
    "logout_hint": N_("The sign-out request is not valid."),
}  # fmt: skip


def page_lang(request: Request, conn: ConnDep, user: Principal | None) -> str:
    wanted = (request.query_params.get("ui_locales") or "").split()
    inner = parse_qs(urlsplit(request.query_params.get("next") or "").query)  # the sign-in page's
    wanted += (inner.get("ui_locales") or [""])[0].split()
    stored = None
    if user is not None:
        row = conn.execute("SELECT locale FROM users WHERE id = %s", (user.user_id,)).fetchone()
        stored = row[0] if row else None
    hinted = next((w[:2] for w in wanted if w[:2] in i18n.LANGUAGES), None)  # the platform's
    return i18n.pick(stored, hinted, request.cookies.get(LANG_COOKIE),
                     accept_language=request.headers.get("accept-language", ""))  # fmt: skip


def _error_page(request: Request, lang: str, kind: str, status: int = 400) -> Response:
    msg = i18n.gettext(lang, ERROR_TEXT[kind])
    return render(request, "oidc_message.html", lang, status_code=status,
                  title=i18n.gettext(lang, N_("Sign-in was refused")), message=msg,
                  error=True)  # fmt: skip


def _auth_time(conn: ConnDep, request: Request) -> datetime:
    token = request.cookies.get(COOKIE, "")
    row = conn.execute(
        "SELECT created_at FROM sessions WHERE token_hash = %s", (sessions.digest(token),)
    ).fetchone()
    return row[0] if row else datetime.now(UTC)


def _start(request: Request, conn: ConnDep, settings: SettingsDep, method: str) -> Any:
    """Validate the authorization request with Authlib: (provider, request, grant, client,
    user, lang) or a response (an error page, or an error sent back to the platform)."""
    user = session_user(request, conn)
    lang = page_lang(request, conn, user)
    client = find(conn, request.query_params.get("client_id"))
    if client is None:
        return _error_page(request, lang, "client")
    subject = claims.Subject(user.user_id, client) if user and user.user_id else None
    provider = Provider(conn, settings, issuer(request, settings))
    provider.auth_time = _auth_time(conn, request)
    params = list(request.query_params.multi_items())
    req = OidcRequest(method, authlib_uri(request, settings), request.headers, params)
    try:
        grant = provider.get_consent_grant(req, end_user=subject)
    except OAuth2Error as error:
        if error.redirect_uri:  # the redirect URI was checked: the platform hears of it
            response: Response = provider.handle_error_response(req, error)
            return response
        redirect = request.query_params.get("redirect_uri")
        kind = "redirect" if redirect and not client.check_redirect_uri(redirect) else "other"
        return _error_page(request, lang, kind)
    return provider, req, grant, client, user, lang


def _sign_in_first(request: Request) -> Response:
    """To the sign-in page and back to this request, less what asked for the sign-in
    (``prompt=login``, ``max_age``): asking again after it would never end."""
    pairs = []
    for k, v in request.query_params.multi_items():
        if k == "max_age":
            continue
        if k == "prompt":
            v = " ".join(p for p in v.split() if p != "login")
            if not v:
                continue
        pairs.append((k, v))
    here = request.url.path + "?" + urlencode(pairs)
    return RedirectResponse("/oidc/login?" + urlencode({"next": here}), status_code=303)


def _sign_in_again(request: Request, auth_time: datetime) -> bool:
    """``prompt=login``, or a session older than ``max_age`` seconds (OIDC Core 3.1.2.1)."""
    if "login" in (request.query_params.get("prompt") or "").split():
        return True
    max_age = request.query_params.get("max_age") or ""
    age = (datetime.now(UTC) - auth_time).total_seconds()
    return max_age.isdigit() and age > int(max_age)


def _issue(conn: ConnDep, provider: Provider, req: OidcRequest, grant: Any, client: Client,
           user: Principal) -> Response:  # fmt: skip
    subject = claims.Subject(int(user.user_id or 0), client)
    consents.used(conn, subject.user_id, client.client_id)
    response: Response = provider.create_authorization_response(req, grant_user=subject,
                                                                 grant=grant)  # fmt: skip
    return response


@router.get(AUTHORIZE)
def authorize(request: Request, conn: ConnDep, settings: SettingsDep) -> Response:
    started = _start(request, conn, settings, "GET")
    if isinstance(started, Response):
        return started
    provider, req, grant, client, user, lang = started
    if user is None or _sign_in_again(request, provider.auth_time):
        return _sign_in_first(request)
    scopes = req.scope.split()
    prompt = (request.query_params.get("prompt") or "").split()
    if consents.covers(conn, user.user_id, client.client_id, scopes) and "consent" not in prompt:
        return _issue(conn, provider, req, grant, client, user)
    return render(request, "oidc_consent.html", lang, user=user, client=client,
                  items=[SCOPE_TEXT[s] for s in scopes if s in SCOPE_TEXT],
                  action=f"{AUTHORIZE}?{request.url.query}")  # fmt: skip


@router.post(AUTHORIZE)
def decide(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    decision: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """The consent form's answer: allow records the consent (audited) and sends a code; deny
    sends the platform ``access_denied``."""
    started = _start(request, conn, settings, "POST")
    if isinstance(started, Response):
        return started
    provider, req, grant, client, user, _lang = started
    if user is None:
        return _sign_in_first(request)
    if decision != "allow":
        denied: Response = provider.create_authorization_response(req, grant_user=None,
                                                                  grant=grant)  # fmt: skip
        return denied
    consents.grant(conn, user, client.client_id, req.scope.split())
    return _issue(conn, provider, req, grant, client, user)


# ---- signing in on the way -------------------------------------------------------------------
def _safe_authorize(next_url: str) -> str:
    """Only back to an authorization request of ours."""
    if next_url.startswith(AUTHORIZE + "?") and "\\" not in next_url:
        return next_url
    return "/"


def _platform(conn: ConnDep, next_url: str) -> str | None:
    query = parse_qs(urlsplit(next_url).query)
    client = find(conn, (query.get("client_id") or [""])[0])
    return client.name if client else None


@router.get("/oidc/login")
def login_form(request: Request, conn: ConnDep, next: str = "") -> Response:
    lang = page_lang(request, conn, None)
    target = _safe_authorize(next)
    return render(request, "oidc_login.html", lang, next=target, email="", error=None,
                  platform=_platform(conn, target))  # fmt: skip


@router.post("/oidc/login")
def login(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
    email: Annotated[str, Form(max_length=1000)] = "",
    password: Annotated[str, Form(max_length=2000)] = "",
    next: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """The API's login (throttled, audited, cloud/api/auth.py): any role may sign in to a
    platform; the session is the console's and the app's own."""
    lang = page_lang(request, conn, None)
    target = _safe_authorize(next)
    got = attempt(conn, settings, throttle, client_address(request), email, password)

    def again(error: str, status: int) -> Response:
        return render(request, "oidc_login.html", lang, status_code=status, next=target,
                      email=email[:254], error=i18n.gettext(lang, error),
                      platform=_platform(conn, target))  # fmt: skip

    if got.retry_after:
        response = again(N_("Too many failed attempts. Try again later."), 429)
        response.headers["Retry-After"] = str(got.retry_after)
        return response
    if got.token is None:
        return again(N_("Wrong login or password."), 200)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, got.token, max_age=settings.session_ttl_s, httponly=True,
                        secure=True, samesite="lax", path="/")  # fmt: skip
    return response


# ---- RP-initiated logout ---------------------------------------------------------------------
def _end_session(conn: ConnDep, request: Request, response: Response) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        sessions.logout(conn, token)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


def _after_logout(request: Request, lang: str, uri: str | None, state: str | None) -> Response:
    if uri:
        target = uri + (("&" if "?" in uri else "?") + urlencode({"state": state})
                        if state else "")  # fmt: skip
        return RedirectResponse(target, status_code=303)
    return render(request, "oidc_message.html", lang, title=i18n.gettext(lang, N_("Signed out")),
                  message=i18n.gettext(lang, N_("You are signed out of qadam.")),
                  error=False)  # fmt: skip


def _logout_request(request: Request, conn: ConnDep, settings: SettingsDep,
                    params: dict[str, str]) -> Any:  # fmt: skip
    """(lang, uri, state, hint_matches) or an error page."""
    user = session_user(request, conn)
    lang = page_lang(request, conn, user)
    hint = params.get("id_token_hint")
    checked = consents.check_hint(conn, hint, issuer(request, settings)) if hint else None
    if hint and checked is None:
        return _error_page(request, lang, "logout_hint")
    client_id = params.get("client_id") or (checked.client_id if checked else None)
    if checked and client_id != checked.client_id:
        return _error_page(request, lang, "logout_hint")
    client = find(conn, client_id)
    uri = params.get("post_logout_redirect_uri")
    if uri and (client is None or uri not in client.post_logout_redirect_uris):
        return _error_page(request, lang, "logout_uri")
    matches = bool(checked and client and user and user.user_id
                   and claims.pairwise_sub(client, user.user_id) == checked.sub)  # fmt: skip
    return lang, uri, params.get("state"), matches


LOGOUT_PARAMS = ("id_token_hint", "post_logout_redirect_uri", "client_id", "state",
                 "ui_locales")  # fmt: skip


@router.get("/oidc/logout")
def logout(request: Request, conn: ConnDep, settings: SettingsDep) -> Response:
    """The platform's sign-out: with an ID token of this session's user, at once; otherwise
    the person confirms (a link on another site must not sign anyone out)."""
    params = {k: v[:4000] for k, v in request.query_params.items() if k in LOGOUT_PARAMS}
    checked = _logout_request(request, conn, settings, params)
    if isinstance(checked, Response):
        return checked
    lang, uri, state, matches = checked
    if matches or session_user(request, conn) is None:
        return _end_session(conn, request, _after_logout(request, lang, uri, state))
    return render(request, "oidc_logout.html", lang, params=params)


@router.post("/oidc/logout")
def logout_confirmed(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    id_token_hint: Annotated[str, Form(max_length=4000)] = "",
    post_logout_redirect_uri: Annotated[str, Form(max_length=4000)] = "",
    client_id: Annotated[str, Form(max_length=100)] = "",
    state: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    params = {k: v for k, v in (("id_token_hint", id_token_hint),
              ("post_logout_redirect_uri", post_logout_redirect_uri),
              ("client_id", client_id), ("state", state)) if v}  # fmt: skip
    checked = _logout_request(request, conn, settings, params)
    if isinstance(checked, Response):
        return checked
    lang, uri, state_, _ = checked
    return _end_session(conn, request, _after_logout(request, lang, uri, state_))
