"""Commands a person asks a board to run (protocol.md "Commands", D27-A): who may, what is
checked, the queue row and its audit row, and the board's recent commands. The API
(``/api/v1/devices/{id}/commands``) and the console's board page (cloud/console/fleet.py) both
call these, so a page can never send what the same person's API call could not."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from cloud.auth import scope
from cloud.auth.principal import Principal, Role
from cloud.commands import config_keys, queue
from cloud.domain import store
from cloud.domain.errors import Forbidden, Invalid, NotFound

Conn = psycopg.Connection[Any]

DOOR_OPENERS: tuple[Role, ...] = ("platform_admin", "school_admin")
OPEN_TTL_MAX_S = 300  # a door opened "once" must not open hours later
STATES = ("queued", "sent", "ok", "failed", "expired", "superseded")


def device_school(conn: Conn, p: Principal, device_id: str) -> str:
    """The device's school when it is in the caller's scope; NotFound otherwise (as missing)."""
    row = conn.execute("SELECT school_id FROM devices WHERE id = %s", (device_id,)).fetchone()
    ids = scope.school_ids(conn, p)
    if row is None or (ids is not None and row[0] not in ids):
        raise NotFound(f"device {device_id} not found")
    return str(row[0])


def send(
    conn: Conn,
    p: Principal,
    device_id: str,
    cmd: str,
    set_: dict[str, Any] | None = None,
    ttl_s: int | None = None,
) -> dict[str, Any]:
    """Queue ``cmd`` for the board (state ``queued``) with an audit row, in the caller's
    transaction; NotFound, Forbidden (an ``open`` by a role that may not open doors) or Invalid
    (a config key or value the board would refuse) before anything is written."""
    school = device_school(conn, p, device_id)
    if cmd == "open" and p.role not in DOOR_OPENERS:
        raise Forbidden(f"role {p.role} may not open a door")
    args: dict[str, Any] = {}
    if cmd == "config":
        args["set"] = config_keys.check_set(set_)
    elif set_ is not None:
        raise Invalid("set", f"only a config command takes 'set', not {cmd}")
    if cmd == "open" and ttl_s is not None and ttl_s > OPEN_TTL_MAX_S:
        raise Invalid("ttl_s", f"an open command waits at most {OPEN_TTL_MAX_S} s")
    row = queue.enqueue(conn, device_id, school, cmd, args, actor_id=p.user_id, ttl_s=ttl_s)
    store.audit(conn, p, "create", "device_commands", row["id"], None, row, school)
    return row


def history(
    conn: Conn,
    p: Principal,
    device_id: str,
    limit: int,
    before: int | None = None,
    state: str | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """The board's commands, newest first, and the ``before`` id of the next (older) page."""
    device_school(conn, p, device_id)
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
    return rows, (int(rows[-1]["id"]) if more else None)
