"""Enrolling a card by tapping it at a reader (D28-A).

The admin starts a wait at one reader of the person's school; the first tap of a card the reader
did not know (an event with reason ``unknown_card``, which the ingest stores anyway) that happened
after the start is the card. Confirming adds it through the same ``people.add_card`` as a typed
UID, by its card key: the board sends the key (SHA-256 of the school's site key and the UID), never
the UID itself (docs/protocol.md "Card key").

Functions take a connection inside the caller's transaction and do not commit; the caller has
checked that the person is in its scope (cloud/auth/scope.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg

from cloud.auth.principal import Principal
from cloud.domain import people, store
from cloud.domain.errors import Conflict, NotFound

Conn = psycopg.Connection[Any]
WAIT = timedelta(seconds=60)
# How long a found card may still be confirmed (the admin reads the page, checks the card).
CONFIRM_WITHIN = timedelta(minutes=10)
# A board's clock may be a little behind the server's: a tap that reached us after the start and
# that the board dates at most this much before it still counts. A tap the board journaled
# offline long before (and sends only now) does not.
CLOCK_SLACK = timedelta(seconds=10)

State = Literal["waiting", "found", "taken", "expired", "confirmed"]


@dataclass(frozen=True)
class Enrolment:
    id: int
    person_id: int
    device_id: str
    started_at: datetime
    expires_at: datetime
    now: datetime
    state: State
    card_key: str | None = None
    tapped_at: datetime | None = None
    holder: str | None = None  # "taken": the name of the card's holder, when in the same school

    @property
    def seconds_left(self) -> int:
        return max(0, int((self.expires_at - self.now).total_seconds() + 0.999))


def readers(conn: Conn, school_id: str) -> list[tuple[str, str, str]]:
    """(device id, place, mode) of the school's readers."""
    rows = conn.execute(
        "SELECT id, place, mode FROM devices WHERE school_id = %s ORDER BY place, id", (school_id,)
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def start(conn: Conn, actor: Principal, person_id: int, device_id: str) -> Enrolment:
    """A new wait at ``device_id``; NotFound when it is no reader of the person's school,
    Conflict when the person is inactive (no card can be added to them)."""
    person = store.get(conn, "people", person_id)
    if not person["active"]:
        raise Conflict(f"person {person_id} is inactive")
    if device_id not in {d for d, _, _ in readers(conn, str(person["school_id"]))}:
        raise NotFound(f"device {device_id!r} not found")
    row = conn.execute(
        "INSERT INTO card_enrolments (person_id, device_id, started_by, expires_at)"
        " VALUES (%s, %s, %s, now() + %s) RETURNING id",
        (person_id, device_id, actor.user_id, WAIT),
    ).fetchone()
    assert row is not None
    return look(conn, person_id, int(row[0]))


def look(conn: Conn, person_id: int, enrolment_id: int) -> Enrolment:
    """The wait's state now; while waiting, the first unknown card tapped at the reader since
    the start is recorded as the wait's card."""
    row = conn.execute(
        "SELECT id, person_id, device_id, started_at, expires_at, now(), card_key, tapped_at,"
        " confirmed_at FROM card_enrolments WHERE id = %s AND person_id = %s FOR UPDATE",
        (enrolment_id, person_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"enrolment {enrolment_id} not found")
    eid, pid, device, started, expires, now, key, tapped, confirmed = row
    if key is None and now <= expires:
        tap = conn.execute(
            "SELECT card_key, occurred_at FROM events WHERE device_id = %s"
            " AND reason = 'unknown_card' AND received_at >= %s AND received_at <= %s"
            " AND occurred_at >= %s ORDER BY received_at, occurred_at LIMIT 1",
            (device, started, expires, started - CLOCK_SLACK),
        ).fetchone()
        if tap is not None:
            key, tapped = str(tap[0]), tap[1]
            conn.execute(
                "UPDATE card_enrolments SET card_key = %s, tapped_at = %s WHERE id = %s",
                (key, tapped, eid),
            )
    base = {"id": int(eid), "person_id": int(pid), "device_id": str(device),
            "started_at": started, "expires_at": expires, "now": now}  # fmt: skip
    if confirmed is not None:
        return Enrolment(**base, state="confirmed", card_key=key, tapped_at=tapped)
    if key is None:
        return Enrolment(**base, state="waiting" if now <= expires else "expired")
    if now > tapped + CONFIRM_WITHIN and now > expires + CONFIRM_WITHIN:
        return Enrolment(**base, state="expired", card_key=key, tapped_at=tapped)
    holder = conn.execute(
        "SELECT p.full_name, p.school_id FROM cards c JOIN people p ON p.id = c.person_id"
        " WHERE c.card_key = %s",
        (key,),
    ).fetchone()
    if holder is not None:
        school = conn.execute("SELECT school_id FROM people WHERE id = %s", (pid,)).fetchone()
        same = school is not None and holder[1] == school[0]
        return Enrolment(**base, state="taken", card_key=key, tapped_at=tapped,
                         holder=str(holder[0]) if same else None)  # fmt: skip
    return Enrolment(**base, state="found", card_key=key, tapped_at=tapped)


def confirm(conn: Conn, actor: Principal, person_id: int, enrolment_id: int) -> dict[str, Any]:
    """Adds the wait's card to the person exactly as a typed one is added (audited); Conflict
    when there is no card to add (still waiting, expired, taken, already confirmed)."""
    e = look(conn, person_id, enrolment_id)
    if e.state != "found" or e.card_key is None:
        raise Conflict(f"enrolment {enrolment_id} has no card to add ({e.state})")
    row = people.add_card(conn, actor, person_id, uid_hex=None, card_key=e.card_key)
    conn.execute("UPDATE card_enrolments SET confirmed_at = now() WHERE id = %s", (enrolment_id,))
    return row
