"""Who is signed in to the console, and the CSRF check of its unsafe requests.

The session is the API's own revocable session (cloud/auth/sessions.py): its opaque token sits in
an HttpOnly, Secure, SameSite=Lax cookie, so signing out or an expiry ends it in both. Roles and
scopes are the API's (cloud/api/deps.py, cloud/auth/scope.py); this module only decides which
roles may open the console at all.

CSRF (as Datasette does, research/ui.md §5): an unsafe request passes only when the browser says
it came from this site: ``Sec-Fetch-Site`` same-origin (or none: typed by the person), or, from
a browser that does not send that header, an ``Origin`` naming this host. A request with neither
is refused: browsers send one of them on every POST, and API clients use bearer tokens, not
this cookie.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request

from cloud.api.deps import ConnDep
from cloud.auth.principal import Principal, Role
from cloud.auth.sessions import principal_for

COOKIE = "qadam_session"
LANG_COOKIE = "qadam_lang"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Staff only: guardians get the parents' app (issue #16), not the console.
CONSOLE_ROLES: tuple[Role, ...] = (
    "platform_admin",
    "district_authority",
    "school_admin",
    "canteen_operator",
    "technician",
)


class SignInNeeded(Exception):
    """No live session: the page sends the person to /login and back."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class NotForRole(Exception):
    """A signed-in user whose role may not open this page."""


def same_site(request: Request) -> bool:
    if request.method in SAFE_METHODS:
        return True
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc == request.headers.get("host", "")


def check_csrf(request: Request) -> None:
    """Router dependency of every console route."""
    if not same_site(request):
        raise HTTPException(status_code=403, detail="cross-site request refused (CSRF)")


def safe_next(value: str | None) -> str:
    """A path on this site to return to after sign-in; anything else goes home."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def session_user(request: Request, conn: ConnDep) -> Principal | None:
    token = request.cookies.get(COOKIE)
    return principal_for(conn, token) if token else None


def console_user(request: Request, conn: ConnDep) -> Principal:
    principal = session_user(request, conn)
    if principal is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInNeeded(quote(here, safe="/?=&"))
    if principal.role not in CONSOLE_ROLES:
        raise NotForRole()
    return principal


ConsoleUser = Annotated[Principal, Depends(console_user)]


def require_role(principal: Principal, roles: tuple[Role, ...]) -> None:
    if principal.role not in roles:
        raise NotForRole()
