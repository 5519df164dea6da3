"""Registering a board from the console (issue #15 "Fleet"): the API's registration
(``POST /api/v1/devices``, checked with its own request model) and claim token
(``POST /api/v1/devices/{id}/claim-token``) in one step, answered with the token as text and as
a QR code, a printable label, and the ``qadam flash`` command to run (docs/flashing.md). The
token is in this answer only, as in the API's: the database keeps its hash."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from cloud.api.deps import DEVICE_WRITERS, ConnDep, SettingsDep
from cloud.api.devices import DeviceIn, DevicePath
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.invitations import qr_svg
from cloud.console.pages import _lang, _nav
from cloud.console.today import schools_in
from cloud.console.web import render
from cloud.domain.errors import Conflict, NotFound
from cloud.provisioning import registration

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])

BOARD_CONFIGS = Path(__file__).resolve().parents[2] / "board-configs"
# the board config suggested for each mode (the technician may pick another)
SUGGESTED = {
    "door": "esp32-devkitc-door-mfrc522.json",
    "turnstile": "esp32-turnstile-wiegand.json",
    "canteen": "esp32-canteen-pn532-ssd1306.json",
}
FIELD_ERRORS = {
    "id": N_("A board id is 1 to 32 small Latin letters, digits and hyphens, not starting "
             "with a hyphen."),
    "school_id": N_("Choose a school."),
    "mode": N_("Choose the board's mode."),
    "direction": N_("Choose where the board stands."),
    "place": N_("The place is at most 200 characters."),
}  # fmt: skip


def board_configs() -> list[tuple[str, bool]]:
    """(file name, an Ethernet board) of the supported board configs (docs/board-configs.md)."""
    out = []
    for path in sorted(BOARD_CONFIGS.glob("*.json")):
        if path.name == "schema.json":
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out.append((path.name, isinstance(doc, dict) and "eth" in doc))
    return out


def _form_page(
    request: Request,
    conn: ConnDep,
    user: Principal,
    lang: str,
    form: dict[str, str],
    errors: list[str],
    status_code: int = 200,
) -> Response:
    schools = schools_in(conn, scope.school_ids(conn, user))
    return render(request, "fleet_new.html", lang, user=user, nav=_nav(user), schools=schools,
                  form=form, errors=errors, configs=board_configs(),
                  status_code=status_code)  # fmt: skip


@router.get("/fleet/new")
def new_board_form(request: Request, conn: ConnDep, user: ConsoleUser) -> Response:
    require_role(user, DEVICE_WRITERS)
    lang = _lang(request, conn, user)
    form = {"id": "", "school_id": user.school_id or "", "mode": "turnstile",
            "direction": "in", "place": "", "config": ""}  # fmt: skip
    return _form_page(request, conn, user, lang, form, [])


def flash_command(base_url: str, device: str, config: str, ethernet: bool) -> list[str]:
    """The technician's two lines (docs/flashing.md "From unboxing to the first tap", step 4):
    the token into a file (not on the command line: shell history), then the flash."""
    lines = [
        "qadam flash --port /dev/ttyUSB0 --image ESP32_GENERIC-v1.29.0.bin \\",
        f"    --config board-configs/{config} \\",
        f"    --cloud {base_url} --claim-file {device}.claim --device {device} \\",
    ]
    if not ethernet:
        lines.append("    --wifi-file school-wifi.json \\")
    lines.append("    --wait-online --broker-user qadam-tech --broker-password-file broker.pw")
    return lines


@router.post("/fleet/new")
def register_board(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    s: SettingsDep,
    id: Annotated[str, Form(max_length=100)] = "",
    school_id: Annotated[str, Form(max_length=100)] = "",
    mode: Annotated[str, Form(max_length=20)] = "",
    direction: Annotated[str, Form(max_length=10)] = "both",
    place: Annotated[str, Form(max_length=400)] = "",
    config: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    require_role(user, DEVICE_WRITERS)
    lang = _lang(request, conn, user)
    form = {"id": id.strip().lower(), "school_id": school_id, "mode": mode,
            "direction": direction, "place": place.strip(), "config": config}  # fmt: skip
    configs = dict(board_configs())
    errors: list[str] = []
    values: dict[str, Any] = {}
    try:
        values = DeviceIn.model_validate({k: form[k] for k in FIELD_ERRORS}).model_dump()
    except ValidationError as e:
        bad = {str(err["loc"][0]) for err in e.errors() if err["loc"]}
        errors = [msg for field, msg in FIELD_ERRORS.items() if field in bad]
    if config and config not in configs:
        errors.append(N_("Choose one of the board configs."))
    if errors:
        return _form_page(request, conn, user, lang, form, errors, 422)
    try:
        with conn.transaction():
            row = registration.register(conn, user, values)
            token, expires = registration.claim_token(conn, user, row["id"], s.claim_token_ttl_s)
    except NotFound:
        errors.append(N_("No such school."))
    except psycopg.errors.UniqueViolation:
        errors.append(N_("A board with this id exists already."))
    except Conflict:
        errors.append(N_("A board of another school had this id; choose another id."))
    if errors:
        return _form_page(request, conn, user, lang, form, errors, 409)
    return _claim_page(request, conn, user, lang, row, token, expires, config or None)


def _claim_page(
    request: Request,
    conn: ConnDep,
    user: Principal,
    lang: str,
    device: dict[str, Any],
    token: str,
    expires: datetime,
    config: str | None,
) -> Response:
    school = conn.execute(
        "SELECT name, timezone FROM schools WHERE id = %s", (device["school_id"],)
    ).fetchone()
    assert school is not None
    configs = dict(board_configs())
    chosen = config or SUGGESTED[device["mode"]]
    base = str(request.base_url).rstrip("/")
    return render(request, "fleet_claim.html", lang, user=user, nav=_nav(user), d=device,
                  school_name=school[0], timezone=school[1], token=token, expires=expires,
                  qr=qr_svg(token), command=flash_command(base, device["id"], chosen,
                                                          configs.get(chosen, False)))  # fmt: skip


@router.post("/fleet/{device_id}/claim-token")
def new_claim_token(
    request: Request, conn: ConnDep, user: ConsoleUser, s: SettingsDep, device_id: DevicePath
) -> Response:
    """A new claim token for a registered board (a lost one, or a board to flash again): the
    API's ``POST /api/v1/devices/{id}/claim-token``."""
    require_role(user, DEVICE_WRITERS)
    lang = _lang(request, conn, user)
    try:
        device = registration.visible(conn, user, device_id)
        token, expires = registration.claim_token(conn, user, device_id, s.claim_token_ttl_s)
    except NotFound:
        return render(request, "not_found.html", lang, status_code=404, user=user,
                      nav=_nav(user))  # fmt: skip
    return _claim_page(request, conn, user, lang, device, token, expires, None)
