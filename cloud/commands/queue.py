"""The command queue (``device_commands``, migration 0021): enqueue, the wire form, delivery state
and the board's reply. Plain SQL on the caller's connection, so an API request enqueues in its own
transaction (with its audit row) and the pusher (cloud/workers/command_push.py) delivers.

Delivery rules (D27-A): a command waits ``queued`` until its board is online; it is published
(QoS 1, never retained) and becomes ``sent``; the reply on ``.../cmd/res`` with its id makes it
``ok`` or ``failed``. ``open`` and ``reboot`` are published at most once (a door must not open
twice, hours late); ``config``, ``resync`` and ``diag`` are published again after a reconnect
or ``command_resend_s`` without a reply (the board answers a repeat of its last id without
running it again). Nothing answered by ``expires_at`` is ``expired``."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]

CMDS = ("open", "reboot", "resync", "config", "diag")
ONCE = ("open", "reboot")  # never published twice
# how long a command waits for its board by default; "open" is for now or never
TTL_S = {"open": 60, "reboot": 3600, "resync": 86400, "config": 7 * 86400, "diag": 3600}
MENU_TTL_S = 7 * 86400
MAX_ATTEMPTS = 10
REPLY_MAX = 16384
ERROR_MAX = 200
OPEN_STATES = ("queued", "sent")

COLUMNS = (
    "id, device_id, school_id, cmd, args, purpose, actor, actor_id, state, created_at,"
    " expires_at, sent_at, attempts, done_at, reply, error"
)


def enqueue(
    conn: Conn,
    device: str,
    school: str,
    cmd: str,
    args: dict[str, Any],
    *,
    actor_id: int | None,
    ttl_s: int | None = None,
    purpose: str = "user",
) -> dict[str, Any]:
    """Queue one command for ``device``; returns its row. A menu push supersedes the board's
    earlier menu pushes still waiting (only the newest menu matters)."""
    if cmd not in CMDS:
        raise ValueError(cmd)
    if purpose == "menu":
        conn.execute(
            "UPDATE device_commands SET state = 'superseded', done_at = now()"
            " WHERE device_id = %s AND purpose = 'menu' AND state IN ('queued', 'sent')",
            (device,),
        )
    ttl = ttl_s or (MENU_TTL_S if purpose == "menu" else TTL_S[cmd])
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "INSERT INTO device_commands (device_id, school_id, cmd, args, purpose, actor,"
            " actor_id, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s,"
            " now() + make_interval(secs => %s)) RETURNING " + COLUMNS,
            (device, school, cmd, Jsonb(args), purpose,
             "system" if actor_id is None else f"user:{actor_id}", actor_id, ttl),
        )  # fmt: skip
        row = cur.fetchone()
    assert row is not None
    return row


def wire(cid: int, cmd: str, args: dict[str, Any]) -> bytes:
    """The command as published on ``{prefix}/v1/dev/{device}/cmd`` (protocol.md "Commands")."""
    doc = {"v": 1, "id": cid, "cmd": cmd}
    doc.update(args)
    return json.dumps(doc, separators=(",", ":")).encode()


def due(conn: Conn, devices: list[str], resend_s: int, *, reconnected: bool = False) -> list[Any]:
    """Commands to publish now to these (online) boards, oldest first: every queued one, and the
    repeatable ones sent without a reply ``resend_s`` ago (any time after a reconnect).
    Rows: (id, device_id, cmd, args)."""
    if not devices:
        return []
    return conn.execute(
        "SELECT id, device_id, cmd, args FROM device_commands"
        " WHERE device_id = ANY(%s) AND state IN ('queued', 'sent') AND expires_at > now()"
        "   AND (state = 'queued' OR (cmd <> ALL(%s) AND attempts < %s"
        "        AND (%s OR sent_at < now() - make_interval(secs => %s))))"
        " ORDER BY device_id, id LIMIT 1000",
        (devices, list(ONCE), MAX_ATTEMPTS, reconnected, resend_s),
    ).fetchall()


def mark_sent(conn: Conn, cid: int) -> None:
    conn.execute(
        "UPDATE device_commands SET state = 'sent', sent_at = now(), attempts = attempts + 1"
        " WHERE id = %s AND state IN ('queued', 'sent')",
        (cid,),
    )


def parse_reply(payload: bytes) -> dict[str, Any] | None:
    """A board's reply ({"v":1,"id":N,"ok":bool,...}) with an integer id (ours), else None."""
    if not payload or len(payload) > REPLY_MAX:
        return None
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("ok"), bool):
        return None
    cid = doc.get("id")
    if isinstance(cid, bool) or not isinstance(cid, int) or not 0 < cid < 2**63:
        return None  # e.g. "floor-N": the boot floor command is not queued here
    return doc


def record_reply(conn: Conn, device: str, doc: dict[str, Any]) -> bool:
    """Store the board's reply on its command: only a command of this board (the topic's), only
    once. Returns whether a command was answered."""
    error = doc.get("error")
    error = str(error)[:ERROR_MAX] if error is not None else None
    row = conn.execute(
        "UPDATE device_commands SET state = %s, reply = %s, error = %s, done_at = now()"
        " WHERE id = %s AND device_id = %s AND state IN ('queued', 'sent') RETURNING id",
        ("ok" if doc["ok"] else "failed", Jsonb(doc), error, doc["id"], device),
    ).fetchone()
    return row is not None


def expire(conn: Conn) -> int:
    cur = conn.execute(
        "UPDATE device_commands SET state = 'expired', done_at = now()"
        " WHERE state IN ('queued', 'sent') AND expires_at <= now()"
    )
    return cur.rowcount
