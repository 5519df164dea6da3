"""Balance ledger per person (docs/ledger.md, D13).

Every balance change is one append-only ``ledger_entries`` row written by the SQL function
``ledger_post`` (cloud/db/migrations/0009_ledger.sql), which locks the person's ``balances`` row,
so concurrent top-ups, refunds, corrections and meal charges serialise per person. Meal charges
are posted by a trigger in the ingest transaction; this module posts the manual entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from cloud.domain.errors import Conflict, Invalid, NotFound

Conn = psycopg.Connection[Any]
ManualKind = Literal["top_up", "refund", "correction"]

ENTRY_COLUMNS = (
    "id, person_id, school_id, kind, amount, balance_after, reason, actor, actor_id, source,"
    " device_id, boot, seq, refund_of, below_floor, created_at"
)


@dataclass(frozen=True)
class Posted:
    entry: dict[str, Any]
    created: bool  # False: the idempotency key was seen before; nothing changed


def source_for(idempotency_key: str) -> str:
    return "api:" + idempotency_key


def get_entry(conn: Conn, entry_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE id = %s", (entry_id,)
        ).fetchone()
    if row is None:
        raise NotFound(f"ledger entry {entry_id} not found")
    return row


def post(
    conn: Conn,
    person_id: int,
    kind: ManualKind,
    amount: Decimal,
    reason: str,
    actor_id: int | None,
    idempotency_key: str,
    refund_of: int | None = None,
) -> Posted:
    """Append one manual entry (``amount`` signed: what it adds to the balance). A repeated
    idempotency key returns the first entry if it is the same request, else raises Conflict."""
    source = source_for(idempotency_key)
    # the person's balance row is locked before anything is checked, so two refunds of one
    # charge (or a replay racing the original) cannot both pass the checks below
    conn.execute(
        "INSERT INTO balances (person_id, school_id)"
        " SELECT id, school_id FROM people WHERE id = %s ON CONFLICT (person_id) DO NOTHING",
        (person_id,),
    )
    conn.execute("SELECT 1 FROM balances WHERE person_id = %s FOR UPDATE", (person_id,))
    seen = conn.execute(
        "SELECT id FROM ledger_entries WHERE person_id = %s AND source = %s",
        (person_id, source),
    ).fetchone()
    if seen is not None:
        entry = get_entry(conn, int(seen[0]))
        same = (
            entry["kind"] == kind
            and entry["amount"] == amount
            and entry["reason"] == reason
            and entry["refund_of"] == refund_of
        )
        if not same:
            raise Conflict("idempotency key already used for a different request")
        return Posted(entry, False)
    if kind == "refund":
        _check_refund(conn, person_id, amount, refund_of)
    row = conn.execute(
        "SELECT entry_id, created FROM ledger_post(%s, %s, %s, %s, %s, %s, p_refund_of => %s)",
        (person_id, kind, amount, reason, actor_id, source, refund_of),
    ).fetchone()
    assert row is not None
    return Posted(get_entry(conn, int(row[0])), bool(row[1]))


def _check_refund(conn: Conn, person_id: int, amount: Decimal, refund_of: int | None) -> None:
    if refund_of is None:
        raise Invalid("charge_id", "a refund names the charge it refunds")
    charge = conn.execute(
        "SELECT kind, amount FROM ledger_entries WHERE id = %s AND person_id = %s",
        (refund_of, person_id),
    ).fetchone()
    if charge is None or charge[0] != "charge":
        raise Invalid("charge_id", "not a charge of this person")
    refunded = conn.execute(
        "SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE refund_of = %s", (refund_of,)
    ).fetchone()
    left = -Decimal(charge[1]) - Decimal(refunded[0] if refunded else 0)
    if amount > left:
        raise Invalid("amount", f"more than is left to refund of that charge ({left})")


def balance(conn: Conn, person_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT p.id AS person_id, p.school_id, coalesce(b.balance, 0.00) AS balance,"
            " s.balance_floor, s.low_balance_threshold, b.last_entry_id, b.updated_at"
            " FROM people p JOIN schools s ON s.id = p.school_id"
            " LEFT JOIN balances b ON b.person_id = p.id WHERE p.id = %s",
            (person_id,),
        ).fetchone()
    if row is None:
        raise NotFound(f"person {person_id} not found")
    return row
