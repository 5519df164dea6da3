"""The parents' app's money page (issue #16, D28-H): a child's meal balance, the ledger (top-ups,
meals, refunds, corrections; paged), the meal category with its period, and the school's
low-balance threshold under which the guardian gets a ``low_balance`` notice (queued by the
ledger in the meal's own transaction, migration 0009; sent as the guardian's settings say).

Everything is read through the API's own route functions (cloud/api/ledger.py,
cloud/api/people.py), so a page shows what the same guardian's API calls return. This module's
router also carries the statistics and settings pages (one line mounts all three)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from babel.dates import format_date
from babel.numbers import format_currency
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from cloud.api.deps import ConnDep, PageParams
from cloud.api.ledger import get_balance, get_ledger
from cloud.api.people import list_eligibility
from cloud.console import app_child, app_nav, app_settings, app_stats, i18n
from cloud.console.app_pages import AppUser, exact
from cloud.console.guard import check_csrf
from cloud.console.i18n import N_
from cloud.console.web import render
from cloud.domain.errors import NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
router.include_router(app_stats.router)
router.include_router(app_settings.router)
app_nav.register("money", N_("Money"), 30, app_nav.BOTH)
PAGE_SIZE = 20
KIND_NAMES = {"top_up": N_("Top-up"), "charge": N_("Meal"), "refund": N_("Refund"),
              "correction": N_("Correction")}  # fmt: skip
ChildId = Annotated[int | None, Query(ge=1, le=2**63 - 1)]


def money(amount: Decimal, lang: str) -> str:
    """1 250,00 ₸ (kk, ru) or 1,250.00 KZT (en): the amount as the language writes numbers
    (CLDR, Kazakhstan's conventions), the currency after it as the push texts have it."""
    return format_currency(amount, "KZT", "#,##0.00\xa0¤", locale=i18n.CLDR[lang])


@dataclass(frozen=True)
class Line:
    when: str
    iso: str
    kind: str
    what: str
    amount: str
    credit: bool
    after: str
    below_floor: bool


@dataclass(frozen=True)
class Category:
    name: str
    kind: str
    since: str  # "27 November 2026" in the page's language
    until: str | None


def category(conn: Any, user: Any, person_id: int, zone_day: date, lang: str) -> Category | None:
    """The eligibility in force today (the API's list, newest first), with its category."""
    page = list_eligibility(conn, user, PageParams(100, 0), person_id)
    for e in page.items:
        if e.valid_from <= zone_day and (e.valid_until is None or e.valid_until >= zone_day):
            row = conn.execute(
                "SELECT name, kind FROM meal_categories WHERE id = %s", (e.category_id,)
            ).fetchone()
            if row is not None:
                end = e.valid_until
                return Category(str(row[0]), str(row[1]), _day(e.valid_from, lang),
                                _day(end, lang) if end else None)  # fmt: skip
    return None


def _day(value: date, lang: str) -> str:
    return format_date(value, "d MMMM y", locale=i18n.CLDR[lang])


@router.get("/app/{lang}/money")
def money_page(
    request: Request, conn: ConnDep, lang: str, user: AppUser, child: ChildId = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:  # fmt: skip
    try:
        kids, shown = app_child.pick(conn, user, child)
    except NotFound:
        return render(request, "app_not_found.html", lang, status_code=404, user=user,
                      children=[], page="money")  # fmt: skip
    ctx: dict[str, Any] = {"user": user, "children": kids, "shown": shown, "page": "money",
                           "child_id": shown.id if shown else None}  # fmt: skip
    if shown is None:
        return render(request, "app_money.html", lang, **ctx)
    b = get_balance(conn, user, shown.id)
    got = get_ledger(conn, user, PageParams(PAGE_SIZE, (page - 1) * PAGE_SIZE), shown.id)
    lines = [
        Line(when=exact(e.created_at, shown.zone, lang), iso=e.created_at.isoformat(),
             kind=e.kind, what=i18n.gettext(lang, KIND_NAMES[e.kind]) + (
                 f" · {e.dish}" if e.dish else "") + (f" · {e.reason}" if e.reason and
                                                      e.kind != "charge" else ""),
             amount=("+" if e.amount > 0 else "−") + money(abs(e.amount), lang),
             credit=e.amount > 0, after=money(e.balance_after, lang),
             below_floor=e.below_floor)
        for e in got.items
    ]  # fmt: skip
    row = conn.execute(
        "SELECT (now() AT TIME ZONE timezone)::date FROM schools WHERE id = %s", (b.school_id,)
    ).fetchone()
    assert row is not None  # the child's school
    today = row[0]
    pages = max(1, -(-got.total // PAGE_SIZE))
    if page > pages and page > 1:
        return render(request, "app_not_found.html", lang, status_code=404, **ctx)
    return render(request, "app_money.html", lang, balance=money(b.balance, lang),
                  below=b.below_threshold, below_floor=b.below_floor,
                  threshold=money(b.low_balance_threshold, lang),
                  floor=money(b.balance_floor, lang), category=category(conn, user, shown.id,
                  today, lang), lines=lines, page_no=page, pages=pages, total=got.total,
                  **ctx)  # fmt: skip
