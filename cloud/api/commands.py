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
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, DeviceReader, DeviceWriter
from cloud.api.devices import DevicePath
from cloud.api.models import BIGINT_MAX, Input
from cloud.commands import user_commands

router = APIRouter(prefix="/api/v1", tags=["devices"])


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


@router.post("/devices/{device_id}/commands", response_model=CommandOut, status_code=202)
def send_command(
    conn: ConnDep, p: DeviceWriter, device_id: DevicePath, body: CommandIn
) -> CommandOut:
    """Queue a command for the board; 202 with its id and state ``queued``. Follow it with
    GET .../commands (``sent``, then ``ok``/``failed`` with the board's reply, or ``expired``)."""
    # the rules (who may open a door, the config keys) are cloud/commands/user_commands.py's,
    # shared with the console's board page
    row = user_commands.send(conn, p, device_id, body.cmd, body.set_, body.ttl_s)
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
    rows, next_before = user_commands.history(conn, p, device_id, limit, before, state)
    return CommandList(items=[CommandOut.model_validate(r) for r in rows], next_before=next_before)
