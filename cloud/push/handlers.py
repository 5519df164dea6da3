"""The outbox handlers that notify by push: granted taps to guardians, and notices that are not
taps (low balance, report reminders, quiet-hours summaries). Outcomes and the handler contract:
cloud/outbox/contract.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cloud.ingest.derive import seq_runs
from cloud.outbox.contract import (
    BaseHandler,
    Conn,
    Delivered,
    OutboxItem,
    Outcome,
    Retry,
    guarded,
)
from cloud.push.message import PushMessage, PushService


class ParentNotificationHandler(BaseHandler):
    """Granted taps to the push service, one message per tap keyed ``tap:device:boot:seq``.
    A row names a run of taps of one board boot as ranges of seq numbers (``runs``, D22; rows
    written before D22 list them, ``seqs``, D18); their person, reader and time are read from
    ``events`` when the row is claimed. Rows written before D18 hold one tap in full. A failure
    retries the whole row; the push service dedupes on the per-tap key, so no tap reaches a
    phone twice.

    Only what means a person passed is told (issue #13 items 8, 9; docs/push.md): granted
    ``tap`` events whose passage no ``not_passed`` withdrew. A tap's time is its corrected
    time (the board's when its clock was synced, else the correction from its boot's reference
    pair, migration 0008); with neither, the time the cloud received it, and the message says
    so. A tap older than ``max_age_s`` by that time is not news: the rows claimed together give
    one summary per child (``tap_summary``, keyed ``late:person:UTC date``, so the push service
    sends one a day per child) instead of a message per tap."""

    kind = "parent_notification"

    def __init__(self, push: PushService, max_age_s: float = 3 * 3600) -> None:
        self.push = push
        self.max_age_s = max_age_s
        # item -> [(seq, person, reader, corrected time or None, received_at)]
        self._taps: dict[int, list[tuple[int, int | None, str, datetime | None, datetime]]] = {}
        # item -> the summaries it sends: person -> [school, count, first, last, untimed]
        self._late: dict[int, dict[int, list[Any]]] = {}

    def claimed(self, conn: Conn, items: Sequence[OutboxItem]) -> None:
        # one row per (item, range of seqs)
        ids: list[int] = []
        devices: list[str] = []
        boots: list[int] = []
        lows: list[int] = []
        highs: list[int] = []
        for i in items:
            runs = _runs(i.payload)
            if runs is None:
                continue
            self._taps[i.id] = []
            for lo, hi in runs:
                ids.append(i.id)
                devices.append(str(i.payload["device_id"]))
                boots.append(int(i.payload["boot"]))
                lows.append(lo)
                highs.append(hi)
        if not ids:
            return
        rows = conn.execute(
            "SELECT r.id, e.seq, e.person_id, e.reader,"
            "  CASE WHEN e.clock_synced THEN e.occurred_at ELSE e.occurred_at_corrected END,"
            "  e.received_at"
            " FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[])"
            "   AS r(id, device_id, boot, lo, hi)"
            " JOIN events e ON e.device_id = r.device_id AND e.boot = r.boot"
            "  AND e.seq BETWEEN r.lo AND r.hi"
            " WHERE e.kind = 'tap' AND e.result = 'granted'"
            "  AND NOT EXISTS (SELECT 1 FROM passage_withdrawals w WHERE w.device_id = e.device_id"
            "                  AND w.boot = e.boot AND w.seq = e.seq)"
            " ORDER BY r.id, e.seq",
            (ids, devices, boots, lows, highs),
        ).fetchall()
        now = datetime.now(UTC)
        schools = {i.id: i.payload.get("school_id") for i in items}
        late: dict[int, tuple[int, list[Any]]] = {}  # person -> (first item, summary)
        for item_id, seq, person_id, reader, at, received_at in rows:
            if now - (at or received_at) > timedelta(seconds=self.max_age_s):
                if person_id is None:
                    continue
                got = late.get(person_id)
                if got is None:
                    late[person_id] = (item_id, [schools[item_id], 1, at, at, 0 if at else 1])
                else:
                    summary = got[1]
                    summary[1] += 1
                    if at is not None:
                        summary[2] = at if summary[2] is None else min(summary[2], at)
                        summary[3] = at if summary[3] is None else max(summary[3], at)
                    else:
                        summary[4] += 1
                continue
            self._taps[item_id].append((seq, person_id, reader, at, received_at))
        for person_id, (item_id, summary) in late.items():
            self._late.setdefault(item_id, {})[person_id] = summary

    def deliver(self, item: OutboxItem) -> Outcome:
        messages = self._messages(item)
        if not isinstance(messages, list):
            return messages
        for message in messages:
            self.push.send(message)
        return Delivered()

    def deliver_many(self, items: Sequence[OutboxItem]) -> list[Outcome]:
        return _push_batch(self.push, items, self._messages, self.deliver)

    def _messages(self, item: OutboxItem) -> list[PushMessage] | Outcome:
        """The messages one row sends (taps, then the late summaries), or its outcome when it
        cannot be sent."""
        p = item.payload
        if "runs" not in p and "seqs" not in p:
            return [_tap_message(item.idempotency_key, p.get("person_id"), p)]
        taps = self._taps.pop(item.id, None)
        late = self._late.pop(item.id, {})
        if taps is None:  # not read at claim time: never mark such a row delivered
            return Retry("taps of the run were not loaded at claim time")
        messages: list[PushMessage] = []
        prefix = f"tap:{p['device_id']}:{p['boot']}:"
        for seq, person_id, reader, at, received_at in taps:
            tap = {
                "school_id": p.get("school_id"), "reader": reader,
                "occurred_at": (at or received_at).isoformat(),
            }  # fmt: skip
            message = _tap_message(f"{prefix}{seq}", person_id, tap)
            if at is None:  # no corrected time: the time it was received, and the text says so
                message = replace(message, payload={"time_source": "received"})
            messages.append(message)
        day = datetime.now(UTC).date().isoformat()
        for person_id, (school, count, first, last, untimed) in sorted(late.items()):
            messages.append(
                PushMessage(
                    idempotency_key=f"late:{person_id}:{day}",
                    person_id=person_id,
                    school_id=school,
                    reader=None,
                    occurred_at=None,
                    kind="tap_summary",
                    payload={
                        "count": count,
                        "first": None if first is None else first.isoformat(),
                        "last": None if last is None else last.isoformat(),
                        "untimed": untimed,
                    },
                )
            )
        return messages


def _push_batch(
    push: PushService,
    items: Sequence[OutboxItem],
    messages_of: Any,  # item -> list[PushMessage] | Outcome
    deliver: Any,  # item -> Outcome, the one-row path
) -> list[Outcome]:
    """Every claimed row at once when the push service sends batches (``send_many``, the Web
    Push service: concurrent POSTs): a row is delivered when all its messages were, else
    retried (the push service dedupes per message key and subscription). Otherwise row by row,
    exactly as ``deliver``."""
    send_many = getattr(push, "send_many", None)
    if send_many is None:
        return [guarded(deliver, item) for item in items]
    outcomes: list[Outcome] = []
    batch: list[PushMessage] = []
    owner: list[int] = []  # per message: its row's position
    for n, item in enumerate(items):
        messages = messages_of(item)
        if isinstance(messages, list):
            outcomes.append(Delivered())
            batch += messages
            owner += [n] * len(messages)
        else:
            outcomes.append(messages)
    errors: list[Exception | None] = list(send_many(batch)) if batch else []
    failed: dict[int, list[str]] = {}
    for n, error in zip(owner, errors, strict=True):
        if error is not None:
            failed.setdefault(n, []).append(f"{type(error).__name__}: {error}")
    for n, why in failed.items():
        outcomes[n] = Retry("; ".join(why))
    return outcomes


def _runs(payload: dict[str, Any]) -> list[tuple[int, int]] | None:
    """The ranges of seq numbers a note names, or None for a row that holds one tap in full."""
    if "runs" in payload:
        return [(int(lo), int(hi)) for lo, hi in payload["runs"]]
    if "seqs" in payload:
        return [(lo, hi) for lo, hi in seq_runs(sorted({int(s) for s in payload["seqs"]}))]
    return None


def _tap_message(key: str, person_id: Any, tap: dict[str, Any]) -> PushMessage:
    return PushMessage(
        idempotency_key=key,
        person_id=int(person_id) if person_id is not None else None,
        school_id=tap.get("school_id"),
        reader=tap.get("reader"),
        occurred_at=None if tap.get("occurred_at") is None else str(tap["occurred_at"]),
    )


class NoticeHandler(BaseHandler):
    """Notifications that are not taps (a low balance for guardians, an unapproved monthly report
    for school admins) go through the same push service with their payload."""

    def __init__(self, kind: str, push: PushService) -> None:
        self.kind = kind
        self.push = push

    def deliver(self, item: OutboxItem) -> Outcome:
        self.push.send(self._message(item))
        return Delivered()

    def deliver_many(self, items: Sequence[OutboxItem]) -> list[Outcome]:
        return _push_batch(self.push, items, lambda i: [self._message(i)], self.deliver)

    def _message(self, item: OutboxItem) -> PushMessage:
        p = item.payload
        pid = p.get("person_id")
        return PushMessage(
            idempotency_key=item.idempotency_key,
            person_id=int(pid) if pid is not None else None,
            school_id=p.get("school_id"),
            reader=None,
            occurred_at=None,
            kind=self.kind,
            payload=dict(p),
        )


# quiet_summary: the notices held during a guardian's quiet hours (cloud/push/preferences.py)
NOTICE_KINDS = ("low_balance", "report_reminder", "quiet_summary")
