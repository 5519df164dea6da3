"""``/api/v1/social-wallet``: the Social Wallet ledger (docs/social-wallet.md).

Platform admins see every school, district authorities their district's schools, school admins
their own school. A ``school`` filter outside the caller's scope is 404, like a missing school.

Resending a rejected or dead delivery after the data was fixed (D24-F) is for platform admins and
school admins (their school), like every other change of a school's data; district authorities
read. ``/status`` says whether anything delivers the records at all.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, PageDep, SchoolAdmin, allow
from cloud.api.models import Input, IsoDate, Page, SchoolId, page_of
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Invalid
from cloud.socialwallet import resend as resend_mod
from cloud.socialwallet import status as status_mod

router = APIRouter(prefix="/api/v1/social-wallet", tags=["social-wallet"])

LedgerReader = Annotated[
    Principal, Depends(allow("platform_admin", "district_authority", "school_admin"))
]
State = Literal["pending", "sent", "accepted", "rejected", "dead"]
STATES: tuple[State, ...] = ("pending", "sent", "accepted", "rejected", "dead")
MONTH_RE = re.compile(r"^((?:19|20|21)\d\d)-(0[1-9]|1[0-2])$")
DeliveryKey = Annotated[str, Path(min_length=1, max_length=300)]
ReasonCode = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


class ReasonOut(BaseModel):
    code: str
    message: str = ""


class DeliveryOut(BaseModel):
    idempotency_key: str
    school_id: str
    person_id: int | None
    device_id: str
    boot: int
    seq: int
    occurred_at: datetime
    day: date
    meal_category: str
    state: State
    reference: str | None
    reasons: list[ReasonOut]
    last_error: str | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    confirmed_at: datetime | None
    reconciled_at: datetime | None
    updated_at: datetime
    resends: int = 0
    resent_at: datetime | None = None


class ReasonCount(BaseModel):
    code: str
    count: int


class SummaryOut(BaseModel):
    school: str | None
    month: str
    total: int
    by_state: dict[str, int]
    reasons: list[ReasonCount]  # rejection reason codes, most frequent first
    errors: list[ReasonCount]  # last errors of dead deliveries


def _schools(conn: Any, p: Principal, school: str | None) -> list[str] | None:
    """The schools to show: the filter (checked against the scope) or the whole scope."""
    if school is not None:
        scope.require_school(conn, p, school)
        return [school]
    return scope.school_ids(conn, p)


@router.get("/deliveries", response_model=Page[DeliveryOut])
def list_deliveries(
    conn: ConnDep,
    p: LedgerReader,
    pg: PageDep,
    school: SchoolId | None = None,
    state: State | None = None,
    date_from: Annotated[IsoDate | None, Query()] = None,
    date_to: Annotated[IsoDate | None, Query()] = None,
) -> Page[DeliveryOut]:
    """Meal records sent (or to be sent) to the Social Wallet, newest meal first. Dates filter
    the school-local meal day, both ends inclusive."""
    if date_from is not None and date_to is not None and date_to < date_from:
        raise Invalid("date_to", "must not be before date_from")
    schools = _schools(conn, p, school)
    where: list[tuple[str, object]] = [
        ("t.school_id = ANY(%s)", schools),
        ("t.state = %s", state),
        ("t.day >= %s", date_from),
        ("t.day <= %s", date_to),
    ]
    total, rows = store.page(
        conn,
        "sw_deliveries",
        where,
        order="occurred_at DESC, idempotency_key",
        limit=pg.limit,
        offset=pg.offset,
    )
    return page_of(DeliveryOut, total, pg.limit, pg.offset, rows)


@router.get("/summary", response_model=SummaryOut)
def summary(
    conn: ConnDep,
    p: LedgerReader,
    month: Annotated[str, Query(pattern=MONTH_RE.pattern)],
    school: SchoolId | None = None,
) -> SummaryOut:
    """Counts by state for one month (meal days), with the rejection reasons and the errors of
    dead deliveries, for one school or every school in the caller's scope."""
    m = MONTH_RE.match(month)
    assert m is not None  # the Query pattern checked it
    year, mon = int(m.group(1)), int(m.group(2))
    first = date(year, mon, 1)
    after = date(year + (mon == 12), mon % 12 + 1, 1)
    schools = _schools(conn, p, school)
    params: dict[str, Any] = {"first": first, "after": after, "schools": schools}
    cond = (
        "day >= %(first)s AND day < %(after)s"
        " AND (%(schools)s::text[] IS NULL OR school_id = ANY(%(schools)s::text[]))"
    )
    by_state: dict[str, int] = {s: 0 for s in STATES}
    for st, n in conn.execute(
        f"SELECT state, count(*) FROM sw_deliveries WHERE {cond} GROUP BY state", params
    ).fetchall():
        by_state[str(st)] = int(n)
    reasons = conn.execute(
        "SELECT r->>'code' AS code, count(*) FROM sw_deliveries,"
        f" jsonb_array_elements(reasons) r WHERE {cond} AND state = 'rejected'"
        " GROUP BY 1 ORDER BY 2 DESC, 1",
        params,
    ).fetchall()
    errors = conn.execute(
        f"SELECT coalesce(last_error, ''), count(*) FROM sw_deliveries WHERE {cond}"
        " AND state = 'dead' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 50",
        params,
    ).fetchall()
    return SummaryOut(
        school=school,
        month=month,
        total=sum(by_state.values()),
        by_state=by_state,
        reasons=[ReasonCount(code=str(c), count=int(n)) for c, n in reasons],
        errors=[ReasonCount(code=str(c), count=int(n)) for c, n in errors],
    )


# ---- resending after the data was fixed (D24-F) ------------------------------------------------
class Skipped(BaseModel):
    idempotency_key: str
    state: State


class ResendOut(BaseModel):
    resent: list[str]  # back in the queue, same idempotency key
    repriced: list[str]  # of those, meals that had no price and got one from the history
    skipped: list[Skipped]  # not rejected or dead: nothing to resend
    more: bool = False  # bulk: more deliveries match than one request resends


class ResendIn(Input):
    school: SchoolId
    state: Literal["rejected", "dead"] | None = None  # default: both
    reason: ReasonCode | None = None  # a rejection reason code, e.g. price_missing
    date_from: IsoDate | None = None
    date_to: IsoDate | None = None


def _out(r: resend_mod.ResendResult, more: bool = False) -> ResendOut:
    return ResendOut(
        resent=r.resent,
        repriced=r.repriced,
        skipped=[Skipped(idempotency_key=k, state=st) for k, st in r.skipped],  # type: ignore[arg-type]
        more=more,
    )


@router.post("/deliveries/{delivery_key}/resend", response_model=ResendOut)
def resend_delivery(conn: ConnDep, p: SchoolAdmin, delivery_key: DeliveryKey) -> ResendOut:
    """Send one rejected or dead meal record again after its data was fixed (prices, BIN, IIN),
    under the same idempotency key; a meal stored unpriced is priced from the price history as
    at the meal. Another state changes nothing (``skipped``). Audited."""
    return _out(resend_mod.resend_in_scope(conn, p, [delivery_key]))


@router.post("/resend", response_model=ResendOut)
def resend_deliveries(conn: ConnDep, p: SchoolAdmin, body: ResendIn) -> ResendOut:
    """Resend one school's rejected and/or dead meal records, optionally only those rejected
    for one reason code and/or of some meal days, oldest first, at most 1000 per request
    (``more``: call again). Audited (one row per delivery and one for the request)."""
    result, more = resend_mod.resend_matching(
        conn, p, body.school, state=body.state, reason=body.reason,
        date_from=body.date_from, date_to=body.date_to,
    )  # fmt: skip
    return _out(result, more)


class StatusOut(BaseModel):
    connector: Literal["configured", "not_configured"]
    detail: str
    workers: int  # outbox workers seen in the last two minutes
    school: str | None
    waiting: dict[str, int]  # pending, sent, dead, rejected
    oldest_waiting_at: datetime | None


@router.get("/status", response_model=StatusOut)
def connector_status(conn: ConnDep, p: LedgerReader, school: SchoolId | None = None) -> StatusOut:
    """Whether an outbox worker delivers meal records (``connector: not_configured`` when none
    does: the records wait), and how many records wait, in the caller's scope."""
    st = status_mod.status(conn, _schools(conn, p, school))
    return StatusOut(
        connector=st.connector,  # type: ignore[arg-type]
        detail=st.detail,
        workers=st.workers,
        school=school,
        waiting=st.waiting,
        oldest_waiting_at=st.oldest_waiting_at,
    )
