"""``/api/v1/people/{id}/balance`` and ``/ledger``: a person's meal balance (docs/ledger.md).

Money moves only through append-only ledger entries. Top-ups, refunds and corrections are posted
by a school admin (own school) or a platform admin and need an ``Idempotency-Key`` header: a
repeated request returns the first entry (200) instead of posting twice. Meal charges are posted
by the ingest (D13). Guardians read their own children's balance and ledger.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, PageDep, allow
from cloud.api.models import BIGINT_MAX, IdPath, Input, Page, page_of, text
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Invalid
from cloud.ledger import ENTRY_COLUMNS, Posted, balance, post

router = APIRouter(prefix="/api/v1/people", tags=["ledger"])

BalanceWriter = Annotated[Principal, Depends(allow("platform_admin", "school_admin"))]
BalanceReader = Annotated[
    Principal,
    Depends(allow("platform_admin", "school_admin", "canteen_operator", "guardian", "student")),
]
LedgerReader = Annotated[
    Principal, Depends(allow("platform_admin", "school_admin", "guardian", "student"))
]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="client-chosen key; a repeated request returns the first entry",
    ),
]
MAX_AMOUNT = Decimal("1000000")
Money = Annotated[Decimal, Field(gt=0, le=MAX_AMOUNT, max_digits=12, decimal_places=2)]
SignedMoney = Annotated[
    Decimal, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, max_digits=12, decimal_places=2)
]
Kind = Literal["top_up", "charge", "refund", "correction"]


class TopUpIn(Input):
    amount: Money
    reason: text(0, 500) = ""  # type: ignore[valid-type]  # e.g. the payment reference


class RefundIn(Input):
    amount: Money
    charge_id: Annotated[int, Field(ge=1, le=BIGINT_MAX)]
    reason: text(3, 500)  # type: ignore[valid-type]


class CorrectionIn(Input):
    amount: SignedMoney  # what it adds to the balance; negative takes money off
    reason: text(3, 500)  # type: ignore[valid-type]


class EntryOut(BaseModel):
    id: int
    person_id: int
    school_id: str
    kind: Kind
    amount: Decimal
    balance_after: Decimal
    reason: str
    actor: str
    actor_id: int | None
    source: str
    device_id: str | None
    boot: int | None
    seq: int | None
    refund_of: int | None
    below_floor: bool
    created_at: datetime
    # a meal charge: the dish the canteen board reported (None: not reported, or not a charge)
    dish_id: int | None = None
    dish: str | None = None


class BalanceOut(BaseModel):
    person_id: int
    school_id: str
    currency: Literal["KZT"] = "KZT"
    balance: Decimal
    balance_floor: Decimal
    low_balance_threshold: Decimal
    below_threshold: bool
    below_floor: bool
    last_entry_id: int | None
    updated_at: datetime | None


def _posted(conn: Any, p: Principal, posted: Posted, response: Response) -> Any:
    response.status_code = 201 if posted.created else 200
    if posted.created:
        store.audit(
            conn, p, "create", "ledger_entry", posted.entry["id"], None, posted.entry,
            posted.entry["school_id"],
        )  # fmt: skip
    return EntryOut.model_validate(posted.entry)


@router.post("/{person_id}/balance/top-up", response_model=EntryOut, status_code=201)
def top_up(
    conn: ConnDep,
    p: BalanceWriter,
    person_id: IdPath,
    body: TopUpIn,
    key: IdempotencyKey,
    response: Response,
) -> Any:
    """Money paid in for the person's meals. 201 with the new entry; 200 with the first entry
    when the Idempotency-Key was used before for the same request (409 for another one)."""
    scope.require_person(conn, p, person_id)
    posted = post(conn, person_id, "top_up", body.amount, body.reason, p.user_id, key)
    return _posted(conn, p, posted, response)


@router.post("/{person_id}/balance/refund", response_model=EntryOut, status_code=201)
def refund(
    conn: ConnDep,
    p: BalanceWriter,
    person_id: IdPath,
    body: RefundIn,
    key: IdempotencyKey,
    response: Response,
) -> Any:
    """Gives back (part of) one meal charge of this person; never more than was charged."""
    scope.require_person(conn, p, person_id)
    posted = post(
        conn, person_id, "refund", body.amount, body.reason, p.user_id, key, body.charge_id
    )
    return _posted(conn, p, posted, response)


@router.post("/{person_id}/balance/correction", response_model=EntryOut, status_code=201)
def correction(
    conn: ConnDep,
    p: BalanceWriter,
    person_id: IdPath,
    body: CorrectionIn,
    key: IdempotencyKey,
    response: Response,
) -> Any:
    """A signed correction with a reason (a wrong top-up, a manual adjustment)."""
    scope.require_person(conn, p, person_id)
    if body.amount == 0:
        raise Invalid("amount", "a correction of 0 changes nothing")
    posted = post(conn, person_id, "correction", body.amount, body.reason, p.user_id, key)
    return _posted(conn, p, posted, response)


@router.get("/{person_id}/balance", response_model=BalanceOut)
def get_balance(conn: ConnDep, p: BalanceReader, person_id: IdPath) -> BalanceOut:
    scope.require_person(conn, p, person_id)
    b = balance(conn, person_id)
    return BalanceOut(
        **b,
        below_threshold=b["balance"] < b["low_balance_threshold"],
        below_floor=b["balance"] < b["balance_floor"],
    )


@router.get("/{person_id}/ledger", response_model=Page[EntryOut])
def get_ledger(
    conn: ConnDep,
    p: LedgerReader,
    pg: PageDep,
    person_id: IdPath,
    kind: Annotated[Kind | None, Query()] = None,
) -> Page[EntryOut]:
    """Newest first."""
    scope.require_person(conn, p, person_id)
    where: list[tuple[str, object]] = [("t.person_id = %s", person_id), ("t.kind = %s", kind)]
    total, rows = store.page(
        conn,
        "ledger_entries",
        where,
        order="id DESC",
        limit=pg.limit,
        offset=pg.offset,
        columns=ENTRY_COLUMNS,
    )
    _with_dishes(conn, rows)
    return page_of(EntryOut, total, pg.limit, pg.offset, rows)


def _with_dishes(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Add the served dish to the meal charges of one page (one query)."""
    keys = [(r["device_id"], r["boot"], r["seq"]) for r in rows if r["kind"] == "charge"]
    if not keys:
        return
    found = {
        (str(d), int(b), int(q)): (dish_id, name)
        for d, b, q, dish_id, name in conn.execute(
            "SELECT m.device_id, m.boot, m.seq, m.dish_id, ds.name_ru FROM meal_receipts m"
            " JOIN dishes ds ON ds.id = m.dish_id"
            " WHERE (m.device_id, m.boot, m.seq) IN"
            " (SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[]))",
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
        ).fetchall()
    }
    for r in rows:
        if r["kind"] == "charge":
            r["dish_id"], r["dish"] = found.get((r["device_id"], r["boot"], r["seq"]), (None, None))
