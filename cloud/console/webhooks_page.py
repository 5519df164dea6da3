"""The console's Webhooks page (issue #17 part 2, D29-I): a school's signed webhook subscribers
and the hosts they may point at, changed as the API changes them (cloud/api/webhooks.py): the
same domain functions (cloud/webhooks/subscribers.py) check, store and audit, and the same roles
may act (the API's ``WebhookKeeper`` and ``WebhookHostKeeper``). A new or rotated secret is
shown once, in the answer to the POST that made it, and never again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep, SettingsDep, roles_of
from cloud.api.models import IdPath
from cloud.api.webhooks import WebhookHostKeeper, WebhookKeeper
from cloud.auth.principal import Principal
from cloud.console import nav
from cloud.console.guard import CONSOLE_ROLES, ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav, _school_choice
from cloud.console.web import render
from cloud.domain.errors import NotFound
from cloud.webhooks import subscribers
from cloud.webhooks.subscribers import EVENTS, Refused

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
KEEPERS = tuple(r for r in roles_of(WebhookKeeper) if r in CONSOLE_ROLES)
HOST_KEEPERS = tuple(r for r in roles_of(WebhookHostKeeper) if r in CONSOLE_ROLES)
nav.register("/webhooks", N_("Webhooks"), KEEPERS, 86)
EVENT_TEXT = {
    "passage": N_("Passages (entrance and exit)"),
    "meal": N_("Meals received"),
    "device_offline": N_("A reader went offline"),
    "report_approved": N_("A monthly report approved"),
}
PROBLEMS = {
    "host_name": N_("Each line must be a host name, such as hooks.example.kz."),
    "hosts_many": N_("At most 50 hosts per school."),
    "url_bad": N_("The address is not a valid web address (no password, no #)."),
    "url_https": N_("The address must start with https://."),
    "url_host": N_("This address's host is not on the school's list of allowed hosts. The"
                   " district or platform administrator adds hosts."),
    "events": N_("Choose at least one kind of event."),
    "too_many": N_("A school has at most 20 webhooks."),
}  # fmt: skip


def _page(request: Request, conn: ConnDep, user: Principal, school: str | None,
          status: int = 200, **ctx: object) -> Response:  # fmt: skip
    lang = _lang(request, conn, user)
    schools, shown = _school_choice(conn, user, school)
    ctx.setdefault("form", {"url": "", "events": []})
    return render(request, "webhooks.html", lang, status_code=status, user=user, nav=_nav(user),
                  schools=schools, school=shown, EVENTS=EVENTS, EVENT_TEXT=EVENT_TEXT,
                  hosts=subscribers.hosts(conn, shown) if shown else [],
                  hooks=subscribers.listing(conn, shown) if shown else [],
                  can_keep_hosts=user.role in HOST_KEEPERS, **ctx)  # fmt: skip


def _not_found(request: Request, conn: ConnDep, user: Principal) -> Response:
    return render(request, "not_found.html", _lang(request, conn, user), status_code=404,
                  user=user, nav=_nav(user))  # fmt: skip


@router.get("/webhooks")
def webhooks_page(
    request: Request, conn: ConnDep, user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:  # fmt: skip
    require_role(user, KEEPERS)
    try:
        return _page(request, conn, user, school or None)
    except NotFound:
        return _not_found(request, conn, user)


@router.post("/webhooks")
def register(
    request: Request, conn: ConnDep, settings: SettingsDep, user: ConsoleUser,
    school: Annotated[str, Form(max_length=100)] = "",
    url: Annotated[str, Form(max_length=2048)] = "",
    events: Annotated[list[str] | None, Form(max_length=len(EVENTS))] = None,
) -> Response:  # fmt: skip
    require_role(user, KEEPERS)
    form = {"url": url, "events": events or []}
    try:
        _, shown = _school_choice(conn, user, school or None)
        if shown is None:
            raise NotFound("no school")
        made = subscribers.register(conn, user, shown, url, events or [],
                                    settings.webhook_allow_http_loopback)  # fmt: skip
    except NotFound:
        return _not_found(request, conn, user)
    except Refused as e:
        conn.rollback()  # nothing of a refused registration stays
        return _page(request, conn, user, school or None, form=form,
                     errors=[PROBLEMS[e.code]])  # fmt: skip
    return _page(request, conn, user, shown, secret=made)


@router.post("/webhooks/hosts")
def set_hosts(
    request: Request, conn: ConnDep, user: ConsoleUser,
    school: Annotated[str, Form(max_length=100)] = "",
    hosts: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:  # fmt: skip
    require_role(user, HOST_KEEPERS)
    try:
        _, shown = _school_choice(conn, user, school or None)
        if shown is None:
            raise NotFound("no school")
        subscribers.set_hosts(conn, user, shown, hosts.split())
    except NotFound:
        return _not_found(request, conn, user)
    except Refused as e:
        conn.rollback()
        return _page(request, conn, user, shown, host_text=hosts,
                     errors=[PROBLEMS[e.code]])  # fmt: skip
    return RedirectResponse(f"/webhooks?school={shown}", status_code=303)


def _own(conn: ConnDep, user: Principal, webhook_id: int) -> str:
    school = subscribers.school_of(conn, webhook_id)
    _school_choice(conn, user, school)  # NotFound outside the user's scope
    return school


@router.post("/webhooks/{webhook_id}/rotate")
def rotate(request: Request, conn: ConnDep, user: ConsoleUser, webhook_id: IdPath) -> Response:
    require_role(user, KEEPERS)
    try:
        school = _own(conn, user, webhook_id)
        made = subscribers.rotate(conn, user, webhook_id)
    except NotFound:
        return _not_found(request, conn, user)
    return _page(request, conn, user, school, secret=made, rotated=True)


@router.post("/webhooks/{webhook_id}/delete")
def delete(request: Request, conn: ConnDep, user: ConsoleUser, webhook_id: IdPath) -> Response:
    require_role(user, KEEPERS)
    try:
        school = _own(conn, user, webhook_id)
        subscribers.delete(conn, user, webhook_id)
    except NotFound:
        return _not_found(request, conn, user)
    return RedirectResponse(f"/webhooks?school={school}", status_code=303)
