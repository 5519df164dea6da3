"""``/api/v1/devices/{id}/commands``: remote commands to a board (protocol.md "Commands", D27-A).

A command is queued (``device_commands``) with an audit row in the request's transaction and
answered 202 with its id; cloud/workers/command_push.py delivers it when the board is online and
stores the board's reply. Technicians and school admins of the device's school (and platform
admins) may reboot, resync, collect diagnostics and change config keys; only school admins and
platform admins may open the door."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, DeviceReader, DeviceWriter
from cloud.api.devices import DevicePath
from cloud.api.models import BIGINT_MAX, Input
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.commands import config_keys, queue
from cloud.domain import store
from cloud.domain.errors import Forbidden, Invalid, NotFound

router = APIRouter(prefix="/api/v1", tags=["devices"])

DOOR_OPENERS = ("platform_admin", "school_admin")
OPEN_TTL_MAX_S = 300  # a door opened "once" must not open hours later


class CommandIn(Input):
    cmd: Literal["open", "reboot", "resync", "config", "diag"]
    set_: dict[str, Any] | None = Field(
        default=None, alias="set", description="config only: device.json keys to set"
    )
    ttl_s: int | None = Field(
        default=None, ge=10, le=7 * 86400,
        description="how long the command may wait for the board (default per command)",
    )  # fmt: skip


class CommandOut(BaseModel):
    id: int
    device_id: str
    cmd: str
    args: dict[str, Any]
    purpose: str
    actor: str
    state: str
    created_at: datetime
    expires_at: datetime
    sent_at: datetime | None
    attempts: int
    done_at: datetime | None
    reply: dict[str, Any] | None
    error: str | None


class CommandList(BaseModel):
    items: list[CommandOut]
    next_before: int | None = Field(description="pass as ?before= for the next (older) page")


def _device_school(conn: ConnDep, p: Principal, device_id: str) -> str:
    row = conn.execute("SELECT school_id FROM devices WHERE id = %s", (device_id,)).fetchone()
    ids = scope.school_ids(conn, p)
    if row is None or (ids is not None and row[0] not in ids):
        raise NotFound(f"device {device_id} not found")
    return str(row[0])


@router.post("/devices/{device_id}/commands", response_model=CommandOut, status_code=202)
def send_command(
    conn: ConnDep, p: DeviceWriter, device_id: DevicePath, body: CommandIn
) -> CommandOut:
    """Queue a command for the board; 202 with its id and state ``queued``. Follow it with
    GET .../commands (``sent``, then ``ok``/``failed`` with the board's reply, or ``expired``)."""
    school = _device_school(conn, p, device_id)
    if body.cmd == "open" and p.role not in DOOR_OPENERS:
        raise Forbidden(f"role {p.role} may not open a door")
    args: dict[str, Any] = {}
    if body.cmd == "config":
        args["set"] = config_keys.check_set(body.set_)
    elif body.set_ is not None:
        raise Invalid("set", f"only a config command takes 'set', not {body.cmd}")
    if body.cmd == "open" and body.ttl_s is not None and body.ttl_s > OPEN_TTL_MAX_S:
        raise Invalid("ttl_s", f"an open command waits at most {OPEN_TTL_MAX_S} s")
    row = queue.enqueue(conn, device_id, school, body.cmd, args, actor_id=p.user_id,
                        ttl_s=body.ttl_s)  # fmt: skip
    store.audit(conn, p, "create", "device_commands", row["id"], None, row, school)
    return CommandOut.model_validate(row)


@router.get("/devices/{device_id}/commands", response_model=CommandList)
def list_commands(
    conn: ConnDep,
    p: DeviceReader,
    device_id: DevicePath,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    state: Literal["queued", "sent", "ok", "failed", "expired", "superseded"] | None = None,
) -> CommandList:
    """The board's commands, newest first; keyset paging with ``before`` (an id)."""
    _device_school(conn, p, device_id)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT " + queue.COLUMNS + " FROM device_commands WHERE device_id = %s"
            " AND (%s::bigint IS NULL OR id < %s) AND (%s::text IS NULL OR state = %s)"
            " ORDER BY id DESC LIMIT %s",
            (device_id, before, before, state, state, limit + 1),
        )
        rows = cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return CommandList(
        items=[CommandOut.model_validate(r) for r in rows],
        next_before=int(rows[-1]["id"]) if more else None,
    )
