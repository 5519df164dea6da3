"""The console's Social Wallet page (issue #15, D28-F): the meal records sent to the state system
by state (counts and a list with filters), rejected ones with their reasons, resending one or the
selected after the data was fixed, re-pricing the ``price_missing`` ones, and whether anything
delivers the records at all.

Reads and resends through the API's functions (cloud/api/socialwallet.py,
cloud/socialwallet/resend.py, status.py) and role rules: readers P/D/S, resend P/S (audited).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.auth import scope
from cloud.auth.principal import Principal, Role
from cloud.console import nav
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.today import schools_in
from cloud.console.web import render
from cloud.domain.errors import Invalid, NotFound
from cloud.socialwallet import resend as resend_mod
from cloud.socialwallet import status as status_mod

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])

# The API's gates (cloud/api/socialwallet.py): LedgerReader reads, SchoolAdmin resends.
READERS: tuple[Role, ...] = ("platform_admin", "district_authority", "school_admin")
RESENDERS: tuple[Role, ...] = ("platform_admin", "school_admin")
nav.register("/social-wallet", N_("Social Wallet"), READERS, 80)

PAGE_SIZE = 50
STATES = ("pending", "sent", "accepted", "rejected", "dead")
STATE_NAMES = {"pending": N_("waiting to be sent"), "sent": N_("sent, no answer yet"),
               "accepted": N_("accepted"), "rejected": N_("rejected"),
               "dead": N_("gave up sending")}  # fmt: skip
# the fake receiver's codes (docs/social-wallet.md); an unknown one is shown as it came
REASON_NAMES = {
    "price_missing": N_("the meal has no price"),
    "pupil_unknown": N_("the pupil is not known to the Social Wallet"),
    "pupil_not_eligible": N_("the pupil is not eligible for this meal"),
    "invalid_field": N_("a field of the record is invalid"),
    "school_bin_missing": N_("the school's BIN is missing"),
    "idempotency_key_mismatch": N_("the record's key does not match its content"),
    "idempotency_key_reused": N_("the record's key was used for another record"),
}
CATEGORY = {"free": N_("free"), "reduced": N_("reduced price"), "paid": N_("paid")}
ERRORS = {
    "date": N_("The date is not a date."),
    "order": N_("The start is after the end."),
    "state": N_("Unknown state."),
    "school": N_("No such school."),
    "page": N_("That page link is broken."),
    "none": N_("Select at least one record."),
    "gone": N_("A selected record is not in your scope."),
}


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _cursor(value: str | None) -> tuple[str, str] | None:
    """The keyset of the next page: the last row's occurred_at and key, as ``at|key``."""
    if not value:
        return None
    at, sep, key = value.partition("|")
    if not sep or not key:
        raise ValueError(value)
    datetime.fromisoformat(at)
    return at, key


def deliveries(
    conn: ConnDep, schools: list[str] | None, state: str | None, date_from: date | None,
    date_to: date | None, reason: str | None, after: tuple[str, str] | None,
) -> tuple[list[dict[str, Any]], str | None]:  # fmt: skip
    """Newest meal first (the API's order), PAGE_SIZE at a time by keyset."""
    rows = conn.execute(
        "SELECT d.idempotency_key, d.school_id, d.person_id, coalesce(p.full_name, ''), d.day,"
        " d.occurred_at, d.meal_category, d.state, d.reasons, d.last_error, d.attempts,"
        " d.resends, d.resent_at, d.reference"
        " FROM sw_deliveries d LEFT JOIN people p ON p.id = d.person_id"
        " WHERE (%(schools)s::text[] IS NULL OR d.school_id = ANY(%(schools)s::text[]))"
        "   AND (%(state)s::text IS NULL OR d.state = %(state)s)"
        "   AND (%(from)s::date IS NULL OR d.day >= %(from)s::date)"
        "   AND (%(to)s::date IS NULL OR d.day <= %(to)s::date)"
        "   AND (%(reason)s::text IS NULL OR d.reasons @> jsonb_build_array("
        "        jsonb_build_object('code', %(reason)s::text)))"
        "   AND (%(at)s::timestamptz IS NULL OR (d.occurred_at, d.idempotency_key)"
        "        < (%(at)s::timestamptz, %(key)s::text))"
        " ORDER BY d.occurred_at DESC, d.idempotency_key DESC LIMIT %(n)s",
        {"schools": schools, "state": state, "from": date_from, "to": date_to,
         "reason": reason, "at": after[0] if after else None, "key": after[1] if after else None,
         "n": PAGE_SIZE + 1},
    ).fetchall()  # fmt: skip
    keys = ("key", "school", "person_id", "name", "day", "occurred_at", "category", "state",
            "reasons", "last_error", "attempts", "resends", "resent_at", "reference")  # fmt: skip
    items = [dict(zip(keys, r, strict=True)) for r in rows[:PAGE_SIZE]]
    more = len(rows) > PAGE_SIZE
    last = items[-1] if items else None
    return items, (f"{last['occurred_at'].isoformat()}|{last['key']}" if more and last else None)


def counts(conn: ConnDep, schools: list[str] | None) -> dict[str, int]:
    by_state = {s: 0 for s in STATES}
    for st, n in conn.execute(
        "SELECT state, count(*) FROM sw_deliveries"
        " WHERE %s::text[] IS NULL OR school_id = ANY(%s::text[]) GROUP BY state",
        (schools, schools),
    ).fetchall():
        by_state[str(st)] = int(n)
    return by_state


def _view(
    request: Request, conn: ConnDep, user: Principal, lang: str, form: dict[str, str],
    errors: list[str], notice: str | None = None, status_code: int = 0,
) -> Response:  # fmt: skip
    """The page; ``status_code`` 0: 422 when a filter is wrong, else 200."""
    schools = schools_in(conn, scope.school_ids(conn, user))
    school = form.get("school") or None
    if not errors and school:
        try:
            scope.require_school(conn, user, school)
        except NotFound:
            errors.append(ERRORS["school"])
    wanted: list[str] | None = [school] if school else scope.school_ids(conn, user)
    after = date_from = date_to = None
    try:
        date_from, date_to = _date(form.get("date_from")), _date(form.get("date_to"))
        if date_from and date_to and date_to < date_from:
            errors.append(ERRORS["order"])
    except ValueError:
        errors.append(ERRORS["date"])
    if form.get("state") and form["state"] not in STATES:
        errors.append(ERRORS["state"])
    try:
        after = _cursor(form.get("cursor"))
    except ValueError:
        errors.append(ERRORS["page"])
    items: list[dict[str, Any]] = []
    next_cursor = None
    if not errors:
        items, next_cursor = deliveries(conn, wanted, form.get("state") or None, date_from,
                                        date_to, form.get("reason") or None, after)  # fmt: skip
    st = status_mod.status(conn, wanted if not errors else [])
    query = {k: v for k, v in form.items() if v and k != "cursor"}
    return render(
        request, "social_wallet.html", lang, status_code=status_code or (422 if errors else 200),
        user=user, nav=_nav(user), schools=schools, form=form, errors=errors, notice=notice,
        items=items, counts=counts(conn, wanted) if not errors else {}, status=st,
        states=STATES, state_names=STATE_NAMES, reason_names=REASON_NAMES, categories=CATEGORY,
        can_resend=user.role in RESENDERS, many=len(schools) > 1,
        query=urlencode(query), state_url=lambda s: "/social-wallet?" + urlencode(
            {**{k: v for k, v in query.items() if k != "state"}, **({"state": s} if s else {})}),
        next_url="/social-wallet?" + urlencode({**query, "cursor": next_cursor})
        if next_cursor else None,
    )  # fmt: skip


Q = Annotated[str | None, Query(max_length=300)]


@router.get("/social-wallet")
def wallet_page(
    request: Request, conn: ConnDep, user: ConsoleUser, school: Q = None, state: Q = None,
    date_from: Q = None, date_to: Q = None, reason: Q = None, cursor: Q = None,
    done: Q = None,
) -> Response:  # fmt: skip
    require_role(user, READERS)
    lang = _lang(request, conn, user)
    form = {"school": school or "", "state": state or "", "date_from": date_from or "",
            "date_to": date_to or "", "reason": reason or "", "cursor": cursor or ""}  # fmt: skip
    notice = done if done and done.isdigit() else None  # how many the last resend sent
    return _view(request, conn, user, lang, form, [], notice)


@router.post("/social-wallet/resend")
def resend_selected(
    request: Request, conn: ConnDep, user: ConsoleUser,
    key: Annotated[list[str] | None, Form(max_length=300)] = None,
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:  # fmt: skip
    """Resend the ticked records (or the one whose button was pressed): the API's path, audited
    per record. A key outside the caller's scope refuses the whole request."""
    require_role(user, RESENDERS)
    lang = _lang(request, conn, user)
    keys = list(dict.fromkeys(key or []))[: resend_mod.BULK_MAX]
    form = _back_form(back)
    if not keys:
        return _view(request, conn, user, lang, form, [ERRORS["none"]], status_code=422)
    try:
        result = resend_mod.resend_in_scope(conn, user, keys)
    except NotFound:
        return _view(request, conn, user, lang, form, [ERRORS["gone"]], status_code=404)
    return _done(form, len(result.resent))


@router.post("/social-wallet/reprice")
def reprice(
    request: Request, conn: ConnDep, user: ConsoleUser,
    school: Annotated[str, Form(min_length=1, max_length=100)],
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:  # fmt: skip
    """Every ``price_missing`` rejection of one school, priced from the price history and
    resent: the API's bulk resend with that reason (audited once more for the request)."""
    require_role(user, RESENDERS)
    lang = _lang(request, conn, user)
    form = _back_form(back)
    try:
        result, _more = resend_mod.resend_matching(conn, user, school, reason="price_missing")
    except (NotFound, Invalid):
        return _view(request, conn, user, lang, form, [ERRORS["school"]], status_code=404)
    return _done(form, len(result.resent))


def _back_form(back: str) -> dict[str, str]:
    got = parse_qs(back, max_num_fields=10)
    names = ("school", "state", "date_from", "date_to", "reason")
    return {n: (got.get(n) or [""])[0][:300] for n in names} | {"cursor": ""}


def _done(form: dict[str, str], resent: int) -> Response:
    query = {k: v for k, v in form.items() if v and k != "cursor"}
    return RedirectResponse("/social-wallet?" + urlencode({**query, "done": resent}),
                            status_code=303)  # fmt: skip
