"""Versioned per-school whitelists and the boards' reported state (the storage side of
cloud/workers/whitelist_push.py and GET /api/v1/whitelists, /devices/drift).

A change to cards or people marks the school in ``whitelist_dirty`` (trigger, same transaction).
:func:`compile_school` recompiles it; a list whose records equal the newest one's is not stored
again, so only real changes make a new version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg

from cloud.domain import registry
from cloud.domain.board_status import status_doc
from cloud.domain.whitelist import DELTA, HEADER, SNAPSHOT, build_delta, chunk

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Stored:
    school_id: str
    version: int
    data: bytes
    count: int
    crc: int


def latest(conn: Conn, school_id: str) -> Stored | None:
    row = conn.execute(
        "SELECT version, bytes, count, crc FROM whitelists WHERE school_id = %s"
        " ORDER BY version DESC LIMIT 1",
        (school_id,),
    ).fetchone()
    if row is None:
        return None
    return Stored(school_id, int(row[0]), bytes(row[1]), int(row[2]), int(row[3]))


def version_bytes(conn: Conn, school_id: str, version: int) -> bytes | None:
    row = conn.execute(
        "SELECT bytes FROM whitelists WHERE school_id = %s AND version = %s", (school_id, version)
    ).fetchone()
    return None if row is None else bytes(row[0])


def dirty_schools(conn: Conn) -> list[str]:
    return [str(r[0]) for r in conn.execute("SELECT school_id FROM whitelist_dirty ORDER BY since")]


def mark_all_dirty(conn: Conn) -> None:
    """At worker start: recompile every school that has devices (cheap when nothing changed)."""
    conn.execute(
        "INSERT INTO whitelist_dirty (school_id) SELECT DISTINCT school_id FROM devices"
        " ON CONFLICT (school_id) DO NOTHING"
    )


def compile_school(conn: Conn, school_id: str, keep: int) -> Stored | None:
    """Clear the school's dirty flag and compile its list in one transaction; store it as the
    next version if its records differ from the newest stored list. Returns the new list or None
    (nothing changed). Keeps the newest ``keep`` versions."""
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('qadam.whitelist'), hashtext(%s))",
            (school_id,),
        )
        conn.execute("DELETE FROM whitelist_dirty WHERE school_id = %s", (school_id,))
        if conn.execute("SELECT 1 FROM schools WHERE id = %s", (school_id,)).fetchone() is None:
            return None
        last = latest(conn, school_id)
        version = last.version + 1 if last else 1
        data = registry.compile_whitelist(conn, school_id, version)
        # header bytes 8..12 hold the version; everything else must match to be "unchanged"
        if last is not None and data[:8] + data[12:] == last.data[:8] + last.data[12:]:
            return None
        _m, _f, _r, _v, count, crc = HEADER.unpack_from(data, 0)
        conn.execute(
            "INSERT INTO whitelists (school_id, version, bytes, crc, count)"
            " VALUES (%s, %s, %s, %s, %s)",
            (school_id, version, data, crc, count),
        )
        conn.execute(
            "DELETE FROM whitelists WHERE school_id = %s AND version <= %s",
            (school_id, version - keep),
        )
    return Stored(school_id, version, data, count, crc)


@dataclass(frozen=True)
class Push:
    device: str
    version: int
    kind: int  # SNAPSHOT or DELTA
    base: int
    messages: list[bytes]


def plan_push(conn: Conn, device: str, *, force_snapshot: bool = False) -> tuple[Push | None, str]:
    """What to send ``device`` so it runs its school's newest list: (push or None, why)."""
    row = conn.execute(
        "SELECT d.school_id, s.wl_version, s.status->>'wl_err', COALESCE(s.online, false)"
        " FROM devices d LEFT JOIN device_status s ON s.device_id = d.id WHERE d.id = %s",
        (device,),
    ).fetchone()
    if row is None:
        return None, "unknown_device"
    school_id, running, wl_err = str(row[0]), row[1], row[2]
    new = latest(conn, school_id)
    if new is None:
        return None, "no_whitelist"
    if not force_snapshot and running is not None and int(running) == new.version:
        return None, "in_sync"
    if not force_snapshot and running is not None and not wl_err:
        old = version_bytes(conn, school_id, int(running))
        if old is not None:
            delta = build_delta(old, new.data)
            if len(delta) < len(new.data):
                msgs = chunk(delta, new.version, base=int(running), kind=DELTA)
                return Push(device, new.version, DELTA, int(running), msgs), "delta"
    return Push(device, new.version, SNAPSHOT, 0, chunk(new.data, new.version)), "snapshot"


def school_devices(conn: Conn, school_id: str) -> list[str]:
    """Devices of the school that are online (by their last status)."""
    rows = conn.execute(
        "SELECT d.id FROM devices d JOIN device_status s ON s.device_id = d.id"
        " WHERE d.school_id = %s AND s.online ORDER BY d.id",
        (school_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def parse_status(payload: bytes) -> dict[str, Any] | None:
    """A v1 status document, or None if it is not one (ignored, logged by the caller)."""
    doc = status_doc(payload)
    if doc is None:
        return None
    wl = doc.get("wl")
    if wl is not None and (isinstance(wl, bool) or not isinstance(wl, int) or not 0 <= wl < 2**32):
        return None
    return doc


def record_status(conn: Conn, device: str, doc: dict[str, Any], retained: bool) -> bool:
    """Store the board's status; False for an unregistered device. A retained copy (delivered on
    subscribe, possibly old) does not move last_seen forward."""
    wl = doc.get("wl")
    status = json.dumps(doc)
    # last_online (0033): the newest status published while online, for the console's fleet
    row = conn.execute(
        "INSERT INTO device_status (device_id, status, wl_version, online, last_seen,"
        " last_online) SELECT id, %s, %s, %s, CASE WHEN %s THEN NULL ELSE now() END,"
        " CASE WHEN %s THEN %s::jsonb END FROM devices WHERE id = %s"
        " ON CONFLICT (device_id) DO UPDATE SET status = excluded.status,"
        " wl_version = COALESCE(excluded.wl_version, device_status.wl_version),"
        " online = excluded.online,"
        " last_seen = COALESCE(excluded.last_seen, device_status.last_seen), updated_at = now(),"
        " last_online = COALESCE(excluded.last_online, device_status.last_online)"
        " RETURNING device_id",
        (status, wl, doc["online"], retained, doc["online"], status, device),
    ).fetchone()
    return row is not None
