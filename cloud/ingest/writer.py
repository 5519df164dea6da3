"""Store decoded batches in one transaction and say which acks to publish afterwards.

Events are binary-COPied into a per-connection temporary staging table and moved with one
``INSERT ... SELECT ... ON CONFLICT (device_id, boot, seq, occurred_at) DO NOTHING`` (a
retransmission is byte-identical, so it has the same occurred_at and costs nothing; it is acked
again). The same statement derives attendance, meal receipts and outbox rows from the events that
were new (docs/ingest.md). Batches from unregistered devices (D4) and rejects go to
``quarantine`` in the same transaction. The caller commits, *then* publishes the acks.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from cloud.ingest.decode import UNKNOWN_DEVICE, Batch, Decoded, Reject

log = logging.getLogger("qadam.ingest.writer")


@dataclass(frozen=True, slots=True)
class Ack:
    device: str
    boot: int
    first: int
    last: int

    def topic(self, prefix: str) -> str:
        return f"{prefix}/v1/dev/{self.device}/ack"

    def payload(self) -> bytes:
        # the bytes json.dumps(..., separators=(",", ":")) gives, without its cost per ack
        return b'{"v":1,"boot":%d,"first":%d,"last":%d}' % (self.boot, self.first, self.last)


@dataclass(slots=True)
class WriteResult:
    acks: list[Ack] = field(default_factory=list)
    inserted: int = 0  # new event rows
    duplicates: int = 0  # events already stored
    quarantined: int = 0  # quarantine rows
    rejects: Counter[str] = field(default_factory=Counter)  # quarantine rows by reason
    bulk: bool = False  # the events went in by COPY (D18), not by the insert statement


# Per-connection staging table: rows arrive by binary COPY, then move in one statement.
_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    device_id text, boot bigint, seq bigint, card_key text, kind text, reader text,
    result text, reason text, t bigint, sync boolean, up bigint, dish bigint,
    school_id text, person_id bigint
) ON COMMIT DELETE ROWS
"""
_STAGING_COLUMNS = "device_id, boot, seq, card_key, kind, reader, result, reason, t, sync, up, dish"
_STAGING_TYPES = [
    "text", "int8", "int8", "text", "text", "text", "text", "text", "int8", "bool", "int8", "int8",
]  # fmt: skip
_COPY = f"COPY ingest_staging ({_STAGING_COLUMNS}) FROM STDIN (FORMAT BINARY)"

# Granted taps per parent-notification outbox row (at most; a run of seq numbers).
TAPS_PER_NOTE = 256

# One statement: the new events (ON CONFLICT on the identity skips retransmissions) and, from
# exactly those new rows (RETURNING), the derived rows: attendance per person and local day,
# meal receipts for granted canteen taps, and parent-notification outbox rows for granted taps of
# known people.
# Rows are sorted so concurrent workers take row locks in the same order.
_MOVE_INSERT = """
WITH ins AS (
    INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind, reader,
                        result, reason, board_time, clock_synced, uptime_ms, occurred_at)
    SELECT s.device_id, s.boot, s.seq, d.school_id, p.id, s.card_key, s.kind, s.reader,
           s.result, s.reason, to_timestamp(s.t), s.sync, s.up, to_timestamp(s.t)
    FROM ingest_staging s
    JOIN devices d ON d.id = s.device_id
    LEFT JOIN cards c ON c.card_key = s.card_key
    LEFT JOIN people p ON p.id = c.person_id AND p.school_id = d.school_id
    ORDER BY s.device_id, s.boot, s.seq
    ON CONFLICT (device_id, boot, seq, occurred_at) DO NOTHING
    RETURNING device_id, boot, seq, school_id, person_id, reader, result, occurred_at
)"""
_DERIVED = """, granted AS (
    SELECT i.*, (i.occurred_at AT TIME ZONE sc.timezone)::date AS day
    FROM ins i JOIN schools sc ON sc.id = i.school_id
    WHERE i.result = 'granted'
), att AS (
    INSERT INTO attendance AS a (person_id, day, school_id, first_in, last_out, passages)
    SELECT person_id, day, min(school_id),
           min(occurred_at) FILTER (WHERE reader = 'in'),
           max(occurred_at) FILTER (WHERE reader = 'out'),
           count(*)
    FROM granted
    WHERE person_id IS NOT NULL AND reader IN ('in', 'out')
    GROUP BY person_id, day
    ORDER BY person_id, day
    ON CONFLICT (person_id, day) DO UPDATE
       SET first_in = LEAST(a.first_in, EXCLUDED.first_in),
           last_out = GREATEST(a.last_out, EXCLUDED.last_out),
           passages = a.passages + EXCLUDED.passages,
           updated_at = now()
), meals AS (
    INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id, meal_category,
                               occurred_at, day, dish_id)
    SELECT g.device_id, g.boot, g.seq, g.school_id, g.person_id, p.meal_category,
           g.occurred_at, g.day, dd.id
    FROM granted g LEFT JOIN people p ON p.id = g.person_id
    -- the dish the board reported, if it is one of this school's (else NULL, never an error)
    LEFT JOIN dishes dd ON dd.school_id = g.school_id AND dd.id = (
        SELECT max(s.dish) FROM ingest_staging s
        WHERE s.device_id = g.device_id AND s.boot = g.boot AND s.seq = g.seq)
    WHERE g.reader = 'canteen'
    ON CONFLICT (device_id, boot, seq) DO NOTHING
), notes AS (
    -- one row per board boot and run of up to TAPS_PER_NOTE new taps (not one per tap: per-row
    -- cost dominated a replay flush, D18); its key is that of the run's first tap, which is new
    -- exactly once, so a retransmission adds no row. The payload names the taps by seq only
    -- (building a JSON object per tap cost more than the rest of the row); the worker reads
    -- them from events and sends one push per tap, keyed 'tap:device:boot:seq' as before.
    INSERT INTO outbox (kind, idempotency_key, payload)
    SELECT 'parent_notification',
           'taps:' || g.device_id || ':' || g.boot || ':' || min(g.seq),
           jsonb_build_object('school_id', min(g.school_id), 'device_id', g.device_id,
                              'boot', g.boot, 'seqs', to_jsonb(array_agg(g.seq ORDER BY g.seq)))
    FROM granted g
    WHERE g.person_id IS NOT NULL
    GROUP BY g.device_id, g.boot, g.seq / TAPS_PER_NOTE
    ORDER BY g.device_id, g.boot, min(g.seq)
    ON CONFLICT (idempotency_key) DO NOTHING
)
SELECT count(*) FROM ins
""".replace("TAPS_PER_NOTE", str(TAPS_PER_NOTE))
_MOVE = _MOVE_INSERT + _DERIVED

# The bulk path (D18) has already copied the new events into events; the same derived rows come
# from the staging table, which then holds exactly those events with their resolved ids.
_DERIVE_STAGED = (
    """
WITH ins AS (
    SELECT device_id, boot, seq, school_id, person_id, reader, result,
           to_timestamp(t) AS occurred_at
    FROM ingest_staging
)"""
    + _DERIVED
)

# A flush of at least this many events takes the bulk path (a replay); smaller ones (live
# traffic) the one statement above.
BULK_MIN = 1_000
_EVENT_COLUMNS = (
    "device_id, boot, seq, school_id, person_id, card_key, kind, reader, result, reason,"
    " board_time, clock_synced, uptime_ms, occurred_at"
)
_EVENT_TYPES = [
    "text", "int8", "int8", "text", "int8", "text", "text", "text", "text", "text",
    "timestamptz", "bool", "int8", "timestamptz",
]  # fmt: skip
_COPY_EVENTS = f"COPY events ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_RESOLVED = (
    f"COPY ingest_staging ({_STAGING_COLUMNS}, school_id, person_id) FROM STDIN (FORMAT BINARY)"
)
# Is any event of these (device, boot, seq range)s stored already? (then: the statement above)
_ANY_STORED = """
SELECT 1 FROM unnest(%s::text[], %s::int8[], %s::int8[], %s::int8[]) AS r(device_id, boot, lo, hi)
WHERE EXISTS (SELECT 1 FROM events e WHERE e.device_id = r.device_id AND e.boot = r.boot
              AND e.seq BETWEEN r.lo AND r.hi)
LIMIT 1
"""
_CARD_OWNERS = (
    "SELECT c.card_key, p.id, p.school_id FROM cards c JOIN people p ON p.id = c.person_id"
    " WHERE c.card_key = ANY(%s)"
)

_INSERT_QUARANTINE = """
INSERT INTO quarantine (topic, payload, reason, detail, device_id, boot, first_seq, last_seq)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
"""


def _text(s: str | None) -> str | None:
    """Make a string storable as PostgreSQL text (no NUL, valid UTF-8)."""
    if s is None:
        return None
    return s.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def quarantine(cur: psycopg.Cursor[Any], reject: Reject) -> None:
    cur.execute(
        _INSERT_QUARANTINE,
        (
            _text(reject.topic) or "",
            reject.payload,
            reject.reason,
            _text(reject.detail) or "",
            _text(reject.device),
            reject.boot,
            reject.first,
            reject.last,
        ),
    )


_staged: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


def _stage(cur: psycopg.Cursor[Any], rows: list[tuple[object, ...]]) -> None:
    """Binary COPY ``rows`` into this connection's (session-local) staging table."""
    with cur.copy(_COPY) as copy:
        copy.set_types(_STAGING_TYPES)
        for r in rows:
            copy.write_row(r)


def _bulk(cur: psycopg.Cursor[Any], batches: list[Batch], schools: dict[str, str]) -> int | None:
    """Store the events of ``batches`` by COPY straight into ``events`` (about half the database
    time of the insert statement, D18), then their derived rows; return how many, or None when
    this flush is not one for the bulk path: some of its events may be stored already, or two of
    its batches overlap (the caller then uses the insert statement, which dedupes).

    Runs in a savepoint: if another worker stores one of these events meanwhile, the COPY
    fails on the key, the savepoint is rolled back, and None sends the flush the other way."""
    spans: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for b in batches:
        spans.setdefault((b.device, b.boot), []).append((b.first, b.last))
    keys, los, his = [], [], []
    for key, runs in spans.items():
        runs.sort()
        if any(nxt[0] <= prev[1] for prev, nxt in zip(runs, runs[1:], strict=False)):
            return None  # a retransmission in the same flush
        keys.append(key)
        los.append(runs[0][0])
        his.append(runs[-1][1])
    if cur.execute(_ANY_STORED, ([k[0] for k in keys], [k[1] for k in keys], los, his)).fetchone():
        return None
    cards = sorted({e.card for b in batches for e in b.events})
    owners = {str(k): (int(pid), str(sch)) for k, pid, sch in cur.execute(_CARD_OWNERS, (cards,))}
    events: list[tuple[object, ...]] = []
    staged: list[tuple[object, ...]] = []
    for b in batches:
        dev, school = b.device, schools[b.device]
        for e in b.events:
            owner = owners.get(e.card)
            person = owner[0] if owner is not None and owner[1] == school else None
            at = datetime.fromtimestamp(e.t, UTC)  # = to_timestamp(t)
            sync = e.sync == 1
            events.append((dev, e.boot, e.seq, school, person, e.card, e.kind, e.reader,
                           e.result, e.reason, at, sync, e.up, at))  # fmt: skip
            staged.append((dev, e.boot, e.seq, e.card, e.kind, e.reader, e.result, e.reason,
                           e.t, sync, e.up, e.dish, school, person))  # fmt: skip
    try:
        with cur.connection.transaction():
            with cur.copy(_COPY_EVENTS) as copy:
                copy.set_types(_EVENT_TYPES)
                for r in events:
                    copy.write_row(r)
            with cur.copy(_COPY_RESOLVED) as copy:
                copy.set_types([*_STAGING_TYPES, "text", "int8"])
                for r in staged:
                    copy.write_row(r)
            row = cur.execute(_DERIVE_STAGED).fetchone()
    except psycopg.errors.UniqueViolation:
        return None
    assert row is not None and int(row[0]) == len(events)
    return len(events)


def write(
    conn: psycopg.Connection[Any], items: Sequence[Decoded], bulk_min: int | None = None
) -> WriteResult:
    """Store ``items`` in one transaction (committed on return) and return the acks to publish,
    one per item whose range is known, in input order.

    ``conn`` must have no transaction open (use ``autocommit=True``): otherwise this would only be
    a savepoint and nothing would be committed before the acks go out. A flush of ``bulk_min``
    events or more (default ``BULK_MIN``) goes in by the bulk path."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("write() needs a connection with no open transaction (autocommit)")
    result = WriteResult()
    if conn not in _staged:  # in its own transaction: a failed write must not drop it
        with conn.transaction():
            conn.execute(_STAGING_DDL)
            # A replay flush of ~16,000 events sorts its outbox rows; at the default 4 MB that
            # sort spills to disk (EXPLAIN ANALYZE: "external merge"). Session-wide, once.
            conn.execute("SET work_mem = '32MB'")
        _staged.add(conn)
    with conn.transaction(), conn.cursor() as cur:
        batches = [i for i in items if isinstance(i, Batch)]
        schools: dict[str, str] = {}  # device -> its school, for the registered devices
        if batches:
            devices = sorted({b.device for b in batches})
            cur.execute("SELECT id, school_id FROM devices WHERE id = ANY(%s)", (devices,))
            schools = {str(d): str(s) for d, s in cur.fetchall()}
        known = schools.keys()

        rows: list[tuple[object, ...]] = []
        for item in items:
            if isinstance(item, Batch) and item.device in known:
                for e in item.events:
                    rows.append((
                        item.device, e.boot, e.seq, e.card, e.kind, e.reader,
                        e.result, e.reason, e.t, e.sync == 1, e.up, e.dish,
                    ))  # fmt: skip
            elif isinstance(item, Batch):
                quarantine(
                    cur,
                    Reject(
                        UNKNOWN_DEVICE,
                        device=item.device,
                        boot=item.boot,
                        first=item.first,
                        last=item.last,
                        detail=f"device {item.device} is not registered",
                        topic=item.topic,
                        payload=item.payload,
                    ),
                )
                result.quarantined += 1
                result.rejects[UNKNOWN_DEVICE] += 1
            else:
                quarantine(cur, item)
                result.quarantined += 1
                result.rejects[item.reason] += 1

        if rows:
            bulk = None
            if len(rows) >= (BULK_MIN if bulk_min is None else bulk_min):
                bulk = _bulk(cur, [b for b in batches if b.device in known], schools)
                result.bulk = bulk is not None
            if bulk is None:
                _stage(cur, rows)
                row = cur.execute(_MOVE).fetchone()
                bulk = int(row[0]) if row else 0
            result.inserted = bulk
            result.duplicates = len(rows) - result.inserted

    for item in items:
        if isinstance(item, Batch):
            result.acks.append(Ack(item.device, item.boot, item.first, item.last))
        elif item.ackable:
            assert item.device is not None and item.boot is not None
            assert item.first is not None and item.last is not None
            result.acks.append(Ack(item.device, item.boot, item.first, item.last))
    return result
