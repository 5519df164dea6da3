"""The console's fleet (issue #15 "Fleet"): every board of the caller's scope with its health,
and a board's own page with its commands, revocation and deletion.

Reads and writes go through the API's own rules: who may read or change devices
(cloud/api/deps.py DEVICE_READERS, DEVICE_WRITERS), scope (cloud/auth/scope.py), the device's
life (cloud/provisioning/registration.py) and its commands (cloud/commands/user_commands.py:
who may open a door, which config keys a board takes). Each write runs in a savepoint, so a
refused one leaves nothing behind although the page answers normally (the request's
transaction still commits)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.dates import format_timedelta
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import DEVICE_READERS, DEVICE_WRITERS, ConnDep, SettingsDep
from cloud.api.devices import DevicePath
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.commands import config_keys, user_commands
from cloud.console import fleet_data, fleet_new, i18n, nav
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.today import schools_in
from cloud.console.web import render
from cloud.domain.errors import Conflict, Forbidden, Invalid, NotFound
from cloud.provisioning import registration
from cloud.provisioning.dynsec import BrokerError, broker_accounts

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
router.include_router(fleet_new.router)  # first: /fleet/new before /fleet/{device_id}
nav.register("/fleet", N_("Fleet"), DEVICE_READERS, 60)

COMMANDS = ("reboot", "resync", "diag", "open", "config")
HISTORY = 20  # commands shown on a board's page
# the words for stored codes, translated where shown
OTA_STATES = {"pending": N_("waiting"), "offered": N_("offered"), "downloading": N_("downloading"),
              "trial": N_("on trial"), "done": N_("installed"), "rolled_back": N_("rolled back"),
              "failed": N_("failed"), "cancelled": N_("cancelled")}  # fmt: skip
CMD_NAMES = {"reboot": N_("Restart"), "resync": N_("Resend events and card list"),
             "diag": N_("Diagnostics"), "open": N_("Open the door once"),
             "config": N_("Change a setting")}  # fmt: skip
CMD_STATES = {"queued": N_("waiting for the board"), "sent": N_("sent"), "ok": N_("done"),
              "failed": N_("failed"), "expired": N_("expired"),
              "superseded": N_("replaced by a newer one")}  # fmt: skip
NO_BROKER = N_("The broker did not answer; nothing was changed. Try again.")
HAS_EVENTS = N_("This board has sent events, so it stays on record; revoke its access instead.")
# A hint of what each config key takes (numbers and codes: the same in every language).
CONFIG_HINTS: dict[str, str] = {
    **{k: f"{lo}–{hi}" for k, (lo, hi) in config_keys.CONFIG.items()},
    **{k: f"{lo}–{hi}" for k, (lo, hi) in config_keys.CANTEEN_INTS.items()},
    "reader": " / ".join(config_keys.READERS),
    "mode": " / ".join(config_keys.MODES),
    "offline_credit_limit": "650, 650.50",
    "meal_periods": '{"lunch": ["12:00", "14:30"]}',
}


def ago(lang: str) -> Any:
    """``ago(when)``: "2 minutes ago" in the page's language."""

    def fmt(when: datetime | None) -> str:
        if when is None:
            return ""
        delta = when - datetime.now(when.tzinfo)
        return format_timedelta(delta, add_direction=True, locale=i18n.CLDR[lang])

    return fmt


def _not_found(request: Request, lang: str, user: Principal) -> Response:
    return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))


@router.get("/fleet")
def fleet_page(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
    mode: Annotated[str | None, Query(max_length=20)] = None,
    state: Annotated[str | None, Query(max_length=20)] = None,
    deleted: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    require_role(user, DEVICE_READERS)
    lang = _lang(request, conn, user)
    ids = scope.school_ids(conn, user)
    schools = schools_in(conn, ids)
    form = {"school": school or "", "mode": mode or "", "state": state or ""}
    errors: list[str] = []
    if school:
        try:
            scope.require_school(conn, user, school)
        except NotFound:
            errors.append(N_("No such school."))
    if mode and mode not in i18n.MODE_NAMES:
        errors.append(N_("Unknown mode."))
    if state and state not in ("online", "offline"):
        errors.append(N_("Unknown state."))
    total = 0
    rows: list[fleet_data.Board] = []
    if not errors:
        f = fleet_data.Filter(school or None, mode or None,
                              None if not state else state == "online")  # fmt: skip
        total, rows = fleet_data.boards(conn, ids, f)
    query = urlencode({k: v for k, v in form.items() if v})
    return render(request, "fleet.html", lang, user=user, nav=_nav(user), schools=schools,
                  form=form, errors=errors, boards=rows, total=total, ago=ago(lang),
                  refresh_url="/fleet" + (f"?{query}" if query else ""),
                  can_write=user.role in DEVICE_WRITERS, deleted=deleted, OTA_STATES=OTA_STATES,
                  status_code=422 if errors else 200)  # fmt: skip


def _board_page(
    request: Request,
    conn: ConnDep,
    user: Principal,
    lang: str,
    device_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    error_args: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    done: str | None = None,
) -> Response:
    registration.visible(conn, user, device_id)  # NotFound outside the scope
    b = fleet_data.board(conn, device_id)
    if b is None:
        raise NotFound(f"device {device_id} not found")
    commands, _next = user_commands.history(conn, user, device_id, HISTORY)
    return render(request, "fleet_board.html", lang, user=user, nav=_nav(user), b=b,
                  commands=commands, ago=ago(lang), error=error, error_args=error_args or {},
                  form=form or {}, done=done, can_write=user.role in DEVICE_WRITERS,
                  can_open=user.role in user_commands.DOOR_OPENERS, config_hints=CONFIG_HINTS,
                  OTA_STATES=OTA_STATES, CMD_NAMES=CMD_NAMES, CMD_STATES=CMD_STATES,
                  status_code=status_code)  # fmt: skip


@router.get("/fleet/{device_id}")
def board_page(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    device_id: DevicePath,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    require_role(user, DEVICE_READERS)
    lang = _lang(request, conn, user)
    try:
        return _board_page(request, conn, user, lang, device_id, done=done)
    except NotFound:
        return _not_found(request, lang, user)


def _config_value(raw: str) -> Any:
    """A config field as the board's JSON would hold it: an integer, an object (meal periods),
    else the text itself (a reader, a mode, an amount of money)."""
    text = raw.strip()
    if text.lstrip("-").isdigit() and len(text) < 12:
        return int(text)
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


@router.post("/fleet/{device_id}/commands")
def send_command(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    device_id: DevicePath,
    cmd: Annotated[str, Form(max_length=20)],
    key: Annotated[str, Form(max_length=40)] = "",
    value: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    require_role(user, DEVICE_WRITERS)
    lang = _lang(request, conn, user)
    form = {"key": key, "value": value}
    if cmd not in COMMANDS:
        return _board_page(request, conn, user, lang, device_id, status_code=422,
                           error=N_("Unknown command."), form=form)  # fmt: skip
    set_ = {key: _config_value(value)} if cmd == "config" else None
    try:
        with conn.transaction():
            user_commands.send(conn, user, device_id, cmd, set_)
    except NotFound:
        return _not_found(request, lang, user)
    except Forbidden:
        return render(request, "refused.html", lang, status_code=403, user=user, nav=_nav(user))
    except Invalid:
        if key not in config_keys.ALLOWED:
            msg, args = N_("The board has no setting %(key)s."), {"key": key or "—"}
        else:
            msg = N_("The board does not take this value for %(key)s. Allowed: %(allowed)s.")
            args = {"key": key, "allowed": CONFIG_HINTS[key]}
        return _board_page(request, conn, user, lang, device_id, status_code=422, error=msg,
                           error_args=args, form=form)  # fmt: skip
    return RedirectResponse(f"/fleet/{device_id}?done={cmd}", status_code=303)


def _broker(settings: Any) -> Any:
    return lambda: broker_accounts(settings)


@router.post("/fleet/{device_id}/revoke")
def revoke(
    request: Request, conn: ConnDep, user: ConsoleUser, s: SettingsDep, device_id: DevicePath
) -> Response:
    """Disable the board's broker account and void its unused claim tokens (the API's revoke)."""
    require_role(user, DEVICE_WRITERS)
    lang = _lang(request, conn, user)
    try:
        with conn.transaction():
            registration.revoke(conn, user, device_id, _broker(s))
    except NotFound:
        return _not_found(request, lang, user)
    except Conflict:
        return _board_page(request, conn, user, lang, device_id, status_code=409,
                           error=N_("This board has no access to revoke."))  # fmt: skip
    except BrokerError:
        return _board_page(request, conn, user, lang, device_id, status_code=503,
                           error=NO_BROKER)  # fmt: skip
    return RedirectResponse(f"/fleet/{device_id}?done=revoked", status_code=303)


@router.post("/fleet/{device_id}/delete")
def delete(
    request: Request, conn: ConnDep, user: ConsoleUser, s: SettingsDep, device_id: DevicePath
) -> Response:
    """Delete a board that never sent an event and disable its broker account (the API's
    DELETE /api/v1/devices/{id}; audited)."""
    require_role(user, DEVICE_WRITERS)
    lang = _lang(request, conn, user)
    try:
        with conn.transaction():
            registration.delete(conn, user, device_id, _broker(s))
    except NotFound:
        return _not_found(request, lang, user)
    except Conflict:
        return _board_page(request, conn, user, lang, device_id, status_code=409,
                           error=HAS_EVENTS)  # fmt: skip
    except BrokerError:
        return _board_page(request, conn, user, lang, device_id, status_code=503,
                           error=NO_BROKER)  # fmt: skip
    return RedirectResponse("/fleet?" + urlencode({"deleted": device_id}), status_code=303)
