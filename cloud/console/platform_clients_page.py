"""The console's Platform access page (D29-I): a platform admin registers a regional or central
platform's machine client for the read API (its schools, its scopes) and sees its secret once,
or disables one (its tokens stop at once). The same domain functions as `qadam platform-client`
(cloud/integrations/platform/clients.py); every change is audited under the admin's name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.auth.principal import Principal, Role
from cloud.console import nav
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.web import render
from cloud.domain import store
from cloud.domain.errors import Invalid, NotFound
from cloud.integrations.platform import clients

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
ROLES: tuple[Role, ...] = ("platform_admin",)  # a platform reads across schools and districts
nav.register("/platform-clients", N_("Platform access"), ROLES, 87)
SCOPE_TEXT = {
    "attendance.read": N_("Attendance: who entered and left, and when"),
    "meals.read": N_("Meals received"),
}
PROBLEMS = {
    "name": N_("The name must be 1 to 100 characters."),
    "scopes": N_("Choose at least one kind of data."),
    "schools": N_("Give the ids of existing schools, one a line."),
}
ClientPath = Annotated[str, Path(pattern=r"^pc_[A-Za-z0-9_-]{16,64}$")]


def _page(request: Request, conn: ConnDep, user: Principal, **ctx: object) -> Response:
    ctx.setdefault("form", {"name": "", "schools": "", "scopes": []})
    rows = conn.execute(
        "SELECT client_id, name, scopes, schools, created_at, disabled_at FROM platform_clients"
        " ORDER BY disabled_at IS NOT NULL, created_at DESC"
    ).fetchall()
    listed = [dict(zip(("client_id", "name", "scopes", "schools", "created_at", "disabled_at"),
                       r, strict=True)) for r in rows]  # fmt: skip
    return render(request, "platform_clients.html", _lang(request, conn, user), status_code=200,
                  user=user, nav=_nav(user), clients=listed, SCOPES=clients.SCOPES,
                  SCOPE_TEXT=SCOPE_TEXT, **ctx)  # fmt: skip


@router.get("/platform-clients")
def page(request: Request, conn: ConnDep, user: ConsoleUser) -> Response:
    require_role(user, ROLES)
    return _page(request, conn, user)


@router.post("/platform-clients")
def register(
    request: Request, conn: ConnDep, user: ConsoleUser,
    name: Annotated[str, Form(max_length=200)] = "",
    schools: Annotated[str, Form(max_length=20_000)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=len(clients.SCOPES))] = None,
) -> Response:  # fmt: skip
    require_role(user, ROLES)
    form = {"name": name, "schools": schools, "scopes": scopes or []}
    try:
        client_id, secret = clients.create(conn, name, schools.split(), scopes or [])
    except Invalid as e:
        conn.rollback()  # nothing of a refused registration stays
        return _page(request, conn, user, form=form, errors=[PROBLEMS[e.field]])
    store.audit(conn, user, "create", "platform_clients", client_id, None,
                {"name": name.strip(), "schools": sorted(set(schools.split())),
                 "scopes": sorted(set(scopes or []))})  # fmt: skip
    return _page(request, conn, user, made={"client_id": client_id, "secret": secret,
                                            "name": name.strip()})  # fmt: skip


@router.post("/platform-clients/{client_id}/disable")
def disable(request: Request, conn: ConnDep, user: ConsoleUser, client_id: ClientPath) -> Response:
    require_role(user, ROLES)
    try:
        clients.disable(conn, client_id)
    except NotFound:
        return render(request, "not_found.html", _lang(request, conn, user), status_code=404,
                      user=user, nav=_nav(user))  # fmt: skip
    store.audit(conn, user, "revoke", "platform_clients", client_id, None, {"disabled": True})
    return RedirectResponse("/platform-clients", status_code=303)
