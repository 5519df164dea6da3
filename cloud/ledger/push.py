"""Balance pushes to the canteen boards (docs/protocol.md "Canteen balances", decision D15).

The storage side of :mod:`cloud.workers.balance_push`: which schools are due (``balance_dirty``,
marked by triggers, migration 0010), a consistent snapshot of a school's balances keyed by card
together with each board's **watermark** (the newest of its events the cloud has stored), and
the chunks. The board subtracts its own charges after the watermark from the pushed balances,
so a meal is never counted twice and never lost (D15).
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]

MAGIC = b"QBC1"
# magic, chunk index, chunk count, version, watermark boot, watermark seq, floor (tiyn),
# records, CRC-32 of all record bytes, index of the chunk's first record
HEADER = struct.Struct("<4sHHIIIiIII")
PER_CHUNK = 85  # 1020 record bytes: with the 36-byte header the size of a whitelist chunk
MAX_RECORDS = 16384  # what a board accepts (firmware/app/canteen_bal.py)
I32 = 2**31 - 1
U32 = 2**32 - 1


def tiyn(amount: Decimal | int) -> int:
    """Tenge -> tiyn as the board's i32, clamped (a balance beyond ±21 million tenge)."""
    v = int((Decimal(amount) * 100).to_integral_value())
    return max(-I32, min(I32, v))


@dataclass(frozen=True)
class Snapshot:
    school_id: str
    version: int
    floor: int  # tiyn, <= 0
    records: bytes  # sorted 12-byte records: card key 8 + i32 tiyn
    crc: int
    marks: dict[str, tuple[int, int]]  # device -> (boot, seq) watermark

    @property
    def count(self) -> int:
        return len(self.records) // 12


def claim_due(conn: Conn, debounce_ms: int) -> list[str]:
    """Schools whose first mark is at least ``debounce_ms`` old: unmark them and bump their
    push version, in one transaction. The DELETE waits for a transaction still holding a mark
    (0010), so a snapshot taken after this includes every change that marked the school."""
    with conn.transaction():
        rows = conn.execute(
            "DELETE FROM balance_dirty WHERE since <= clock_timestamp() - make_interval(secs => %s)"
            " RETURNING school_id",
            (debounce_ms / 1000,),
        ).fetchall()
        schools = sorted(str(r[0]) for r in rows)
        for school in schools:
            _bump(conn, school)
    return schools


def _bump(conn: Conn, school_id: str) -> int:
    row = conn.execute(
        "INSERT INTO balance_push_state (school_id, version) VALUES (%s, 1)"
        " ON CONFLICT (school_id) DO UPDATE"
        " SET version = balance_push_state.version %% 4294967295 + 1 RETURNING version",
        (school_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def current_version(conn: Conn, school_id: str) -> int:
    """The school's push version (the first time: 1, so a board with no balances (0) differs)."""
    row = conn.execute(
        "SELECT version FROM balance_push_state WHERE school_id = %s", (school_id,)
    ).fetchone()
    if row is not None and int(row[0]) > 0:
        return int(row[0])
    return _bump(conn, school_id)


def canteen_devices(conn: Conn, school_id: str, device: str | None = None) -> list[str]:
    """Online canteen boards of the school (all of them, or just ``device``)."""
    rows = conn.execute(
        "SELECT d.id FROM devices d JOIN device_status s ON s.device_id = d.id"
        " WHERE d.school_id = %s AND s.online AND (%s::text IS NULL OR d.id = %s)"
        " AND (d.mode = 'canteen' OR d.reader = 'canteen' OR s.status ? 'bal') ORDER BY d.id",
        (school_id, device, device),
    ).fetchall()
    return [str(r[0]) for r in rows]


def device_school(conn: Conn, device: str) -> str | None:
    row = conn.execute("SELECT school_id FROM devices WHERE id = %s", (device,)).fetchone()
    return None if row is None else str(row[0])


def snapshot(conn: Conn, school_id: str, devices: list[str]) -> Snapshot:
    """The school's balances by card and each device's watermark, from one database snapshot
    (REPEATABLE READ): a charge is in the balances exactly when its event is at or below the
    watermark, because the ingest stores both in one transaction."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute(
            "SELECT s.balance_floor, coalesce(b.version, 0) FROM schools s"
            " LEFT JOIN balance_push_state b ON b.school_id = s.id WHERE s.id = %s",
            (school_id,),
        ).fetchone()
        if row is None:
            raise LookupError(f"school {school_id} not found")
        floor, version = tiyn(row[0]), int(row[1])
        rows = conn.execute(
            "SELECT c.card_key, coalesce(b.balance, 0) FROM cards c"
            " JOIN people p ON p.id = c.person_id LEFT JOIN balances b ON b.person_id = p.id"
            " WHERE p.school_id = %s AND c.revoked_at IS NULL AND p.active",
            (school_id,),
        ).fetchall()
        marks: dict[str, tuple[int, int]] = {}
        for device in devices:
            m = conn.execute(
                "SELECT boot, seq FROM events WHERE device_id = %s"
                " ORDER BY boot DESC, seq DESC LIMIT 1",
                (device,),
            ).fetchone()
            marks[device] = (int(m[0]), int(m[1])) if m is not None else (0, 0)
    recs = sorted(bytes.fromhex(str(k)) + struct.pack("<i", tiyn(bal)) for k, bal in rows)
    if len(recs) > MAX_RECORDS:
        raise ValueError(f"school {school_id}: {len(recs)} cards > {MAX_RECORDS} a board holds")
    body = b"".join(recs)
    return Snapshot(school_id, version, floor, body, binascii.crc32(body) & U32, marks)


def chunks(snap: Snapshot, boot: int, seq: int, per: int = PER_CHUNK) -> list[bytes]:
    """The push as MQTT payloads for one board (its watermark is in every chunk's header)."""
    if not 0 <= boot <= U32 or not 0 <= seq <= U32:
        raise ValueError("watermark out of range")
    n = snap.count
    count = max(1, -(-n // per))
    out = []
    for i in range(count):
        data = snap.records[i * per * 12 : (i + 1) * per * 12]
        head = HEADER.pack(
            MAGIC, i, count, snap.version, boot, seq, snap.floor, n, snap.crc, i * per
        )
        out.append(head + data)
    return out
