"""Store decoded batches in one transaction and say which acks to publish afterwards.

Events go in with ``INSERT ... ON CONFLICT (device_id, boot, seq) DO NOTHING`` (a retransmission
costs nothing and is acked again). Batches from unregistered devices (D4) and rejects go to
``quarantine`` in the same transaction. The caller commits, *then* publishes the acks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
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
        body = {"v": 1, "boot": self.boot, "first": self.first, "last": self.last}
        return json.dumps(body, separators=(",", ":")).encode()


@dataclass(slots=True)
class WriteResult:
    acks: list[Ack] = field(default_factory=list)
    inserted: int = 0  # new event rows
    duplicates: int = 0  # events already stored
    quarantined: int = 0  # quarantine rows


_INSERT_EVENTS = """
INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind, reader, result,
                    reason, board_time, clock_synced, uptime_ms, occurred_at)
SELECT u.device_id, u.boot, u.seq, d.school_id, p.id, u.card_key, u.kind, u.reader, u.result,
       u.reason, to_timestamp(u.t), u.sync, u.up, to_timestamp(u.t)
FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[],
            %s::text[], %s::text[], %s::bigint[], %s::boolean[], %s::bigint[])
     AS u(device_id, boot, seq, card_key, kind, reader, result, reason, t, sync, up)
JOIN devices d ON d.id = u.device_id
LEFT JOIN cards c ON c.card_key = u.card_key
LEFT JOIN people p ON p.id = c.person_id AND p.school_id = d.school_id
ON CONFLICT (device_id, boot, seq) DO NOTHING
"""

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


def write(conn: psycopg.Connection[Any], items: Sequence[Decoded]) -> WriteResult:
    """Store ``items`` in one transaction (committed on return) and return the acks to publish,
    one per item whose range is known, in input order.

    ``conn`` must have no transaction open (use ``autocommit=True``): otherwise this would only be
    a savepoint and nothing would be committed before the acks go out."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("write() needs a connection with no open transaction (autocommit)")
    result = WriteResult()
    with conn.transaction(), conn.cursor() as cur:
        batches = [i for i in items if isinstance(i, Batch)]
        known: set[str] = set()
        if batches:
            devices = sorted({b.device for b in batches})
            cur.execute("SELECT id FROM devices WHERE id = ANY(%s)", (devices,))
            known = {str(row[0]) for row in cur.fetchall()}

        cols: tuple[list[object], ...] = tuple([] for _ in range(11))
        for item in items:
            if isinstance(item, Batch) and item.device in known:
                for e in item.events:
                    values = (
                        item.device, e.boot, e.seq, e.card, e.kind, e.reader,
                        e.result, e.reason, e.t, e.sync, e.up,
                    )  # fmt: skip
                    for col, v in zip(cols, values, strict=True):
                        col.append(v)
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
            else:
                quarantine(cur, item)
                result.quarantined += 1

        if cols[0]:
            cur.execute(_INSERT_EVENTS, cols)
            result.inserted = max(cur.rowcount, 0)
            result.duplicates = len(cols[0]) - result.inserted

    for item in items:
        if isinstance(item, Batch):
            result.acks.append(Ack(item.device, item.boot, item.first, item.last))
        elif item.ackable:
            assert item.device is not None and item.boot is not None
            assert item.first is not None and item.last is not None
            result.acks.append(Ack(item.device, item.boot, item.first, item.last))
    return result
