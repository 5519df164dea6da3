"""Store decoded batches in one transaction and say which acks to publish afterwards.

Events are binary-COPied into a per-connection temporary staging table and moved with one
``INSERT ... SELECT ... ON CONFLICT (device_id, boot, seq, occurred_at) DO NOTHING`` (a
retransmission is byte-identical, so it has the same occurred_at and costs nothing; it is acked
again); a big flush of events none of which is stored yet goes straight into ``events`` by COPY
(the bulk path, D18). The events that were new get their attendance, meal receipts and outbox
rows in the same transaction (cloud.ingest.derive, docs/ingest.md). Batches from unregistered
devices (D4) and rejects go to ``quarantine`` in the same transaction. So does an event whose
identity (device, boot, seq) is stored already with other content (a re-flashed board that
restarted its boot counter): reason ``identity_reused``, never stored as an event, never a
silent drop; the rest of its batch is stored. The caller commits, *then* publishes the acks.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cloud.ingest.clock import clock_corrected_us
from cloud.ingest.decode import IDENTITY_REUSED, UNKNOWN_DEVICE, Batch, Decoded, Event, Reject
from cloud.ingest.derive import Derived, LocalDays, seq_runs

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
    reused: int = 0  # events whose identity was stored with other content (quarantined)


# Per-connection staging table: rows arrive by binary COPY, then move in one statement.
_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    device_id text, boot bigint, seq bigint, card_key text, kind text, reader text,
    result text, reason text, t bigint, sync boolean, up bigint, dish bigint, method text
) ON COMMIT DELETE ROWS
"""
_STAGING_COLUMNS = (
    "device_id, boot, seq, card_key, kind, reader, result, reason, t, sync, up, dish, method"
)
_STAGING_TYPES = [
    "text", "int8", "int8", "text", "text", "text", "text", "text", "int8", "bool", "int8", "int8",
    "text",
]  # fmt: skip
_COPY = f"COPY ingest_staging ({_STAGING_COLUMNS}) FROM STDIN (FORMAT BINARY)"

# The new events (ON CONFLICT on the identity skips retransmissions), with their school (the
# device's), their person (the card's owner, if in that school) and, for an unsynced clock whose
# boot's reference pair is known, the corrected time (migration 0008). RETURNING names exactly
# the rows that were new; their derived rows follow (cloud.ingest.derive).
# Rows are sorted so concurrent workers take row locks in the same order.
_INSERT = """
INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind, reader,
                    result, reason, board_time, clock_synced, uptime_ms, occurred_at,
                    occurred_at_corrected, method)
SELECT s.device_id, s.boot, s.seq, d.school_id, p.id, s.card_key, s.kind, s.reader,
       s.result, s.reason, to_timestamp(s.t), s.sync, s.up, to_timestamp(s.t),
       CASE WHEN NOT s.sync THEN clock_corrected(r.t_ref, r.up_ref, s.up) END, s.method
FROM ingest_staging s
JOIN devices d ON d.id = s.device_id
LEFT JOIN cards c ON c.card_key = s.card_key
LEFT JOIN people p ON p.id = c.person_id AND p.school_id = d.school_id
LEFT JOIN device_clock_refs r ON r.device_id = s.device_id AND r.boot = s.boot
ORDER BY s.device_id, s.boot, s.seq
ON CONFLICT (device_id, boot, seq, occurred_at) DO NOTHING
RETURNING device_id, boot, seq, extract(epoch FROM occurred_at)::int8, person_id
"""

# A flush of at least this many events takes the bulk path (a replay); smaller ones (live
# traffic) the insert statement above.
BULK_MIN = 1_000
_EVENT_COLUMNS = (
    "device_id, boot, seq, school_id, person_id, card_key, kind, reader, result, reason,"
    " board_time, clock_synced, uptime_ms, occurred_at, occurred_at_corrected, method"
)
# The timestamptz columns go as int8: in COPY's binary format a timestamptz *is* a big-endian
# int8 of microseconds since 2000-01-01 UTC (PostgreSQL's timestamptz_send/recv), and an int is
# far cheaper to make and dump than a datetime (a replay writes two per event).
_EVENT_TYPES = [
    "text", "int8", "int8", "text", "int8", "text", "text", "text", "text", "text",
    "int8", "bool", "int8", "int8", "int8", "text",
]  # fmt: skip
_PG_EPOCH_S = 946_684_800  # 2000-01-01T00:00:00Z in Unix seconds
_COPY_EVENTS = f"COPY events ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
# Is any event of these (device, boot, seq range)s stored already, or any tap among them
# withdrawn by a not_passed stored before it (migration 0017)? (then: the statement above)
_ANY_STORED = """
SELECT 1 FROM unnest(%s::text[], %s::int8[], %s::int8[], %s::int8[]) AS r(device_id, boot, lo, hi)
WHERE EXISTS (SELECT 1 FROM events e WHERE e.device_id = r.device_id AND e.boot = r.boot
              AND e.seq BETWEEN r.lo AND r.hi)
   OR EXISTS (SELECT 1 FROM passage_withdrawals w WHERE w.device_id = r.device_id
              AND w.boot = r.boot AND w.seq BETWEEN r.lo AND r.hi)
LIMIT 1
"""
# The statement path's look at what is stored within the flush's (device, boot, seq range)s:
# the content of stored events of those identities (0: compared with what arrived, so a reused
# identity is caught), and the taps among them withdrawn by a not_passed (1). One index range
# probe per range and partition on the primary key, which leads with (device_id, boot, seq);
# live flushes carry new seqs, so it finds nothing and costs the probes alone.
_STORED = """
SELECT 0, e.device_id, e.boot, e.seq, extract(epoch FROM e.occurred_at)::int8, e.card_key,
       e.kind, e.reader, e.result, e.reason, e.clock_synced, e.uptime_ms
FROM unnest(%s::text[], %s::int8[], %s::int8[], %s::int8[]) AS r(device_id, boot, lo, hi)
CROSS JOIN LATERAL (
    SELECT * FROM events e
    WHERE e.device_id = r.device_id AND e.boot = r.boot AND e.seq BETWEEN r.lo AND r.hi
    OFFSET 0  -- keeps it a probe per range: joined, the planner hashed a scan of whole partitions
) e
UNION ALL
SELECT 1, w.device_id, w.boot, w.seq, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM unnest(%s::text[], %s::int8[], %s::int8[], %s::int8[]) AS r(device_id, boot, lo, hi)
CROSS JOIN LATERAL (
    SELECT * FROM passage_withdrawals w
    WHERE w.device_id = r.device_id AND w.boot = r.boot AND w.seq BETWEEN r.lo AND r.hi
    OFFSET 0
) w
"""
# Joined with unnest, not filtered with "= ANY(%s)": a prepared statement's array is a parameter,
# which PostgreSQL does not hash, so ANY compared each card row with every key (8 ms for 1,000
# keys over 1,000 cards, 2 ms joined).
_CARD_OWNERS = (
    "SELECT c.card_key, p.id, p.school_id FROM unnest(%s::text[]) AS k(card_key)"
    " JOIN cards c USING (card_key) JOIN people p ON p.id = c.person_id"
)
# The reference pairs of just these (device, boot)s: a device keeps one row per boot it ever had.
_CLOCK_REFS = (
    "SELECT r.device_id, r.boot, r.t_ref, r.up_ref FROM device_clock_refs r"
    " JOIN unnest(%s::text[], %s::int8[]) AS k(device_id, boot) USING (device_id, boot)"
)
_DEVICES = (
    "SELECT d.id, d.school_id, s.timezone FROM unnest(%s::text[]) AS k(id)"
    " JOIN devices d USING (id) JOIN schools s ON s.id = d.school_id"
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


# Per connection: its staging table exists, and the local days it has asked for (derive.py).
_sessions: weakref.WeakKeyDictionary[psycopg.Connection[Any], LocalDays] = (
    weakref.WeakKeyDictionary()
)


def _content(e: Event) -> tuple[Any, ...]:
    """What events stores of an event, as the stored row reads back (``_STORED``)."""
    return (e.t, e.card, e.kind, e.reader, e.result, e.reason, e.sync == 1, e.up)


def _ranges(
    batches: Sequence[Batch],
) -> tuple[tuple[list[str], list[int], list[int], list[int]], bool]:
    """The flush's seq ranges per (device, boot), overlapping or adjacent batches merged, and
    whether any two batches overlap."""
    spans: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for b in batches:
        spans.setdefault((b.device, b.boot), []).append((b.first, b.last))
    merged: list[tuple[str, int, int, int]] = []
    overlap = False
    for (dev, boot), runs in spans.items():
        runs.sort()
        lo, hi = runs[0]
        for a, z in runs[1:]:
            overlap = overlap or a <= hi
            if a > hi + 1:
                merged.append((dev, boot, lo, hi))
                lo, hi = a, z
            elif z > hi:
                hi = z
        merged.append((dev, boot, lo, hi))
    columns = (
        [m[0] for m in merged],
        [m[1] for m in merged],
        [m[2] for m in merged],
        [m[3] for m in merged],
    )
    return columns, overlap


def _flush_withdrawals(batches: Sequence[Batch]) -> set[tuple[str, int, int]]:
    """The taps the flush's own not_passed events withdraw (a cheap byte search first)."""
    out: set[tuple[str, int, int]] = set()
    for b in batches:
        if b.payload and b"not_passed" not in b.payload:
            continue
        for e in b.events:
            if e.kind == "not_passed" and e.ref is not None:
                out.add((b.device, e.boot, e.ref))
    return out


def _statement(
    cur: psycopg.Cursor[Any],
    batches: list[Batch],
    schools: dict[str, str],
    derived: Derived,
    result: WriteResult,
) -> int:
    """Store the events of ``batches`` by the insert statement (dedupes), gather the derived rows
    of the new ones; return how many were new.

    First, what is stored in the flush's seq ranges is read back: an event whose identity is
    stored (or came earlier in this flush) with other content is not stored but quarantined with
    its batch (``identity_reused``); a byte-identical one goes on and the key dedupes it."""
    ranges, overlap = _ranges(batches)
    seen: dict[tuple[str, int, int], tuple[Any, ...]] = {}
    withdrawn = _flush_withdrawals(batches)
    for row in cur.execute(_STORED, ranges + ranges):
        if row[0] == 0:
            seen[(row[1], row[2], row[3])] = row[4:]
        else:
            withdrawn.add((row[1], row[2], row[3]))
    derived.withdrawn = withdrawn
    # nothing stored in the ranges and no two batches overlapping (live traffic): every
    # identity is new and appears once, so there is nothing to compare
    kept: list[Batch] = [] if seen or overlap else batches
    for b in batches if seen or overlap else ():
        dev = b.device
        bad: list[int] = []
        for e in b.events:
            key = (dev, e.boot, e.seq)
            content = _content(e)
            stored = seen.setdefault(key, content)
            if stored is not content and stored != content:
                bad.append(e.seq)
        if not bad:
            kept.append(b)
            continue
        result.reused += len(bad)
        result.quarantined += 1
        result.rejects[IDENTITY_REUSED] += 1
        quarantine(
            cur,
            Reject(
                IDENTITY_REUSED,
                device=dev,
                boot=b.boot,
                first=bad[0],
                last=bad[-1],
                detail=(
                    f"device {dev} boot {b.boot}: seq {seq_text(bad)} already stored with other"
                    " content (a re-flashed board restarted its boot counter?); not stored"
                    f" again, {len(b.events) - len(bad)} other event(s) of the batch stored"
                ),
                topic=b.topic,
                payload=b.payload,
            ),
        )
        skip = set(bad)
        rest = tuple(e for e in b.events if e.seq not in skip)
        if rest:
            kept.append(Batch(dev, b.boot, rest, b.topic, b.payload))
    if not kept:
        return 0
    with cur.copy(_COPY) as copy:
        copy.set_types(_STAGING_TYPES)
        for b in kept:
            dev = b.device
            for e in b.events:
                copy.write_row((dev, e.boot, e.seq, e.card, e.kind, e.reader, e.result,
                                e.reason, e.t, e.sync == 1, e.up, e.dish,
                                e.method))  # fmt: skip
    sent = {(b.device, e.boot, e.seq): e for b in kept for e in b.events}
    new: dict[str, tuple[list[Event], list[int | None]]] = {}
    for dev, boot, seq, _t, person in cur.execute(_INSERT).fetchall():
        events, persons = new.setdefault(dev, ([], []))
        events.append(sent[(dev, boot, seq)])
        persons.append(person)
    derived.prepare(cur, [(schools[dev], events) for dev, (events, _) in new.items()])
    for dev, (events, persons) in new.items():
        derived.add(dev, schools[dev], events, persons)
    return sum(len(events) for events, _ in new.values())


def seq_text(seqs: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> "1-3,7" (for a quarantine row's detail)."""
    return ",".join(f"{a}-{z}" if z > a else str(a) for a, z in seq_runs(list(seqs)))


def _bulk(
    cur: psycopg.Cursor[Any], batches: list[Batch], schools: dict[str, str], derived: Derived
) -> int | None:
    """Store the events of ``batches`` by COPY straight into ``events`` (about half the database
    time of the insert statement, D18), gather their derived rows, and return how many; or None
    when this flush is not one for the bulk path: some of its events may be stored already, or
    two of its batches overlap (the caller then uses the insert statement, which dedupes).

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
    refs: dict[tuple[str, int], tuple[int, int]] = {}
    unsynced = sorted({(b.device, b.boot) for b in batches if any(e.sync == 0 for e in b.events)})
    if unsynced:
        pairs = ([d for d, _ in unsynced], [boot for _, boot in unsynced])
        for dev, boot, t_ref, up_ref in cur.execute(_CLOCK_REFS, pairs):
            refs[(str(dev), int(boot))] = (int(t_ref), int(up_ref))
    derived.withdrawn = _flush_withdrawals(batches)
    derived.prepare(cur, [(schools[b.device], b.events) for b in batches])
    # One pass: each row goes to PostgreSQL as soon as it is built, and the batch's derived rows
    # are gathered while the server works on what was sent.
    try:
        with cur.connection.transaction(), cur.copy(_COPY_EVENTS) as copy:
            copy.set_types(_EVENT_TYPES)
            write_row = copy.write_row
            for b in batches:
                dev, school = b.device, schools[b.device]
                persons: list[int | None] = []
                for e in b.events:
                    owner = owners.get(e.card)
                    person = owner[0] if owner is not None and owner[1] == school else None
                    persons.append(person)
                    at = (e.t - _PG_EPOCH_S) * 1_000_000  # = to_timestamp(t), see _EVENT_TYPES
                    corrected = None
                    if e.sync == 0 and (ref := refs.get((dev, e.boot))) is not None:
                        corrected = clock_corrected_us(ref[0], ref[1], e.up)
                    write_row((dev, e.boot, e.seq, school, person, e.card, e.kind,
                               e.reader, e.result, e.reason, at, e.sync == 1, e.up, at,
                               corrected, e.method))  # fmt: skip
                derived.add(dev, school, b.events, persons)
    except psycopg.errors.UniqueViolation:
        return None
    return sum(len(b.events) for b in batches)


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
    days = _sessions.get(conn)
    if days is None:  # in its own transaction: a failed write must not drop it
        with conn.transaction():
            conn.execute(_STAGING_DDL)
        days = _sessions[conn] = LocalDays()
    with conn.transaction(), conn.cursor() as cur:
        batches = [i for i in items if isinstance(i, Batch)]
        schools: dict[str, str] = {}  # device -> its school, for the registered devices
        zones: dict[str, str] = {}  # school -> its time zone
        if batches:
            devices = sorted({b.device for b in batches})
            for dev, school, zone in cur.execute(_DEVICES, (devices,)):
                schools[str(dev)] = str(school)
                zones[str(school)] = str(zone)

        stored: list[Batch] = []
        for item in items:
            if isinstance(item, Batch) and item.device in schools:
                stored.append(item)
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

        n = sum(len(b.events) for b in stored)
        if n:
            inserted = None
            if n >= (BULK_MIN if bulk_min is None else bulk_min):
                derived = Derived(zones, days)
                inserted = _bulk(cur, stored, schools, derived)
                result.bulk = inserted is not None
            if inserted is None:
                derived = Derived(zones, days)
                inserted = _statement(cur, stored, schools, derived, result)
            derived.write(cur)
            result.inserted = inserted
            result.duplicates = n - inserted - result.reused

    for item in items:
        if isinstance(item, Batch):
            result.acks.append(Ack(item.device, item.boot, item.first, item.last))
        elif item.ackable:
            assert item.device is not None and item.boot is not None
            assert item.first is not None and item.last is not None
            result.acks.append(Ack(item.device, item.boot, item.first, item.last))
    return result
