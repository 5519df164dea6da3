"""``/api/v1/social-wallet``: the Social Wallet ledger (docs/social-wallet.md).

Platform admins see every school, district authorities their district's schools, school admins
their own school. A ``school`` filter outside the caller's scope is 404, like a missing school.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from cloud.api.deps import ConnDep, PageDep, allow
from cloud.api.models import IsoDate, Page, SchoolId, page_of
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Invalid

router = APIRouter(prefix="/api/v1/social-wallet", tags=["social-wallet"])

LedgerReader = Annotated[
    Principal, Depends(allow("platform_admin", "district_authority", "school_admin"))
]
State = Literal["pending", "sent", "accepted", "rejected", "dead"]
STATES: tuple[State, ...] = ("pending", "sent", "accepted", "rejected", "dead")
MONTH_RE = re.compile(r"^((?:19|20|21)\d\d)-(0[1-9]|1[0-2])$")


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
