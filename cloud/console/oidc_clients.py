"""Single sign-on in the console (issue #17 part 1, D29-F): a platform admin registers a
learning platform as an OpenID Connect client (name, exact redirect URIs, sign-out return
addresses, the scopes it may receive) and sees its secret once; or switches a platform off.
Every change is audited (cloud/oidc/clients.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.auth import scope
from cloud.auth.principal import Principal, Role
from cloud.console import nav
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.oidc_pages import SCOPE_TEXT
from cloud.console.pages import _lang
from cloud.console.web import render
from cloud.domain.errors import Invalid, NotFound
from cloud.oidc import clients, launch

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
ROLES: tuple[Role, ...] = ("platform_admin",)  # platforms serve every school: the platform's
# a school admin lists registered platforms in their own school's Learning tab
PAGE_ROLES: tuple[Role, ...] = ("platform_admin", "school_admin")
nav.register("/sso", N_("Single sign-on"), PAGE_ROLES, 85)
FIELD_TEXT = {
    "name": N_("The name must be 1 to 100 characters."),
    "redirect_uris": N_("Give 1 to 10 redirect addresses, each a full https address without #."),
    "post_logout_redirect_uris": N_("Each sign-out return address must be a full https address"
                                    " without #."),
    "scopes": N_("Unknown scope."),
    "launch_url": N_("The launch address must be a full https address without #."),
    "school_id": N_("No such school."),
}  # fmt: skip


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _page(request: Request, conn: ConnDep, user: Principal, status: int = 200,
          **ctx: object) -> Response:  # fmt: skip
    ctx.setdefault("form", {"name": "", "redirect_uris": "", "logout_uris": "",
                            "scopes": ["openid"]})  # fmt: skip
    ids = scope.school_ids(conn, user)  # None: every school (a platform admin)
    schools = conn.execute(
        "SELECT id, name FROM schools WHERE %s::text[] IS NULL OR id = ANY (%s::text[])"
        " ORDER BY name, id",
        (ids, ids),
    ).fetchall()
    launches = launch.every(conn) if ids is None else [
        item for school in ids for item in launch.for_school(conn, school)]  # fmt: skip
    return render(request, "oidc_clients.html", _lang(request, conn, user), status_code=status,
                  user=user, nav=nav.for_user(user), clients=clients.listing(conn),
                  SCOPES=clients.SCOPES, SCOPE_TEXT=SCOPE_TEXT, launches=launches,
                  schools=[(str(r[0]), str(r[1])) for r in schools],
                  registers=user.role in ROLES, **ctx)  # fmt: skip


@router.get("/sso")
def clients_page(request: Request, conn: ConnDep, user: ConsoleUser) -> Response:
    require_role(user, PAGE_ROLES)
    return _page(request, conn, user)


@router.post("/sso")
def register(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    name: Annotated[str, Form(max_length=200)] = "",
    redirect_uris: Annotated[str, Form(max_length=6000)] = "",
    logout_uris: Annotated[str, Form(max_length=6000)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=10)] = None,
) -> Response:
    require_role(user, ROLES)
    chosen = ["openid", *(scopes or [])]
    form = {"name": name, "redirect_uris": redirect_uris, "logout_uris": logout_uris,
            "scopes": chosen}  # fmt: skip
    try:
        made = clients.register(conn, user, name, _lines(redirect_uris), _lines(logout_uris),
                                chosen)  # fmt: skip
    except Invalid as e:
        conn.rollback()  # nothing of a refused registration stays
        return _page(request, conn, user, form=form, errors=[FIELD_TEXT[e.field]])
    # the secret is in this one answer and nowhere else (only its digest is kept)
    return _page(request, conn, user, made=made, made_name=name.strip())


@router.post("/sso/{client_id}/disable")
def disable(request: Request, conn: ConnDep, user: ConsoleUser, client_id: str) -> Response:
    require_role(user, ROLES)
    try:
        clients.disable(conn, user, client_id)
    except NotFound:
        return render(request, "not_found.html", _lang(request, conn, user), status_code=404,
                      user=user, nav=nav.for_user(user))  # fmt: skip
    return RedirectResponse("/sso", status_code=303)


@router.post("/sso/schools")
def enable_for_school(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    client_id: Annotated[str, Form(max_length=100)] = "",
    school_id: Annotated[str, Form(max_length=100)] = "",
    launch_url: Annotated[str, Form(max_length=600)] = "",
) -> Response:
    """A platform in a school's Learning tab, opened at its launch address (a school admin:
    their own school's). Audited."""
    require_role(user, PAGE_ROLES)
    try:
        scope.require_school(conn, user, school_id)  # another school: as if there were none
    except NotFound:
        return _page(request, conn, user, errors=[FIELD_TEXT["school_id"]])
    try:
        launch.enable(conn, user, client_id, school_id, launch_url)
    except Invalid as e:
        return _page(request, conn, user, errors=[FIELD_TEXT[e.field]])
    except NotFound:
        return _page(request, conn, user, errors=[N_("No such platform.")])
    return RedirectResponse("/sso", status_code=303)


@router.post("/sso/schools/remove")
def remove_from_school(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    client_id: Annotated[str, Form(max_length=100)] = "",
    school_id: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    require_role(user, PAGE_ROLES)
    try:
        scope.require_school(conn, user, school_id)
        launch.disable(conn, user, client_id, school_id)
    except NotFound:
        return render(request, "not_found.html", _lang(request, conn, user), status_code=404,
                      user=user, nav=nav.for_user(user))  # fmt: skip
    return RedirectResponse("/sso", status_code=303)
