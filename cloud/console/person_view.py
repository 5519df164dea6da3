"""What the console's person page shows: each part read through the same domain functions as the
API route behind it, and only for the roles that route lets in (``SECTION_ROLES``), so a page
shows what the same person's API calls would return. The caller has checked the person is in
the caller's scope (cloud/auth/scope.py ``require_person``)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from cloud.api.deps import (
    CardReader,
    ConsentKeeper,
    PeopleReader,
    RestrictionReader,
    SchoolAdmin,
    roles_of,
)
from cloud.api.ledger import BalanceReader, LedgerReader
from cloud.api.reports import ReportReader
from cloud.auth.principal import Principal, Role
from cloud.console.i18n import N_
from cloud.domain import people as domain
from cloud.domain import store
from cloud.ledger import ENTRY_COLUMNS, balance

Conn = psycopg.Connection[Any]
Row = dict[str, Any]

# part of the page -> the roles of the API route that returns it
SECTION_ROLES: dict[str, tuple[Role, ...]] = {
    "person": roles_of(PeopleReader),  # GET /people/{id}
    "eligibility": roles_of(PeopleReader),  # GET /people/{id}/eligibility
    "cards": roles_of(CardReader),  # GET /people/{id}/cards
    "guardians": roles_of(SchoolAdmin),  # GET /people/{id}/guardians
    "restrictions": roles_of(RestrictionReader),  # GET /people/{id}/restrictions
    "consents": roles_of(ConsentKeeper),  # GET /consents?person=
    "balance": roles_of(BalanceReader),  # GET /people/{id}/balance
    "ledger": roles_of(LedgerReader),  # GET /people/{id}/ledger
    "attendance": roles_of(ReportReader),  # GET /reports/schools/{id}/attendance
}
LEDGER_ROWS = 10

ALLERGEN_NAMES = {
    "gluten": N_("gluten"), "crustaceans": N_("crustaceans"), "eggs": N_("eggs"),
    "fish": N_("fish"), "peanuts": N_("peanuts"), "soybeans": N_("soybeans"),
    "milk": N_("milk"), "nuts": N_("nuts"), "celery": N_("celery"), "mustard": N_("mustard"),
    "sesame": N_("sesame"), "sulphites": N_("sulphites"), "lupin": N_("lupin"),
    "molluscs": N_("molluscs"),
}  # fmt: skip
METHOD_NAMES = {"face": N_("face"), "fingerprint": N_("fingerprint"), "palm": N_("palm"),
                "qr": N_("QR code"), "pin": N_("PIN code")}  # fmt: skip
REVOKE_REASONS = {"lost": N_("lost"), "stolen": N_("stolen"), "damaged": N_("damaged"),
                  "left": N_("left the school"), "other": N_("other reason")}  # fmt: skip
RELATIONS = {"parent": N_("parent"), "legal_representative": N_("legal representative"),
             "other": N_("other relation")}  # fmt: skip
ENTRY_KINDS = {"top_up": N_("top-up"), "charge": N_("meal"), "refund": N_("refund"),
               "correction": N_("correction")}  # fmt: skip


@dataclass
class Day:
    day: date
    state: str  # present | late | absent | none (no school day) | future
    first_in: datetime | None = None


@dataclass
class Month:
    first: date
    weeks: list[list[Day | None]]  # Monday first; None outside the month
    present: int = 0
    late: int = 0
    absent: int = 0
    prev: str = ""
    next: str | None = None  # None: the month has not begun


@dataclass
class PersonPage:
    person: Row
    school_name: str
    class_name: str
    timezone: str
    shows: set[str] = field(default_factory=set)
    cards: list[Row] = field(default_factory=list)
    guardians: list[Row] = field(default_factory=list)
    eligibility: list[Row] = field(default_factory=list)
    category: str = ""
    restrictions: Row | None = None
    consents: list[Row] = field(default_factory=list)
    balance: Row | None = None
    ledger: list[Row] = field(default_factory=list)
    ledger_total: int = 0
    month: Month | None = None


def load(conn: Conn, user: Principal, person_id: int, month: date | None) -> PersonPage:
    shows = {part for part, roles in SECTION_ROLES.items() if user.role in roles}
    person = store.get(conn, "people", person_id)
    head = conn.execute(
        "SELECT s.name, s.timezone, coalesce(c.name, ''), s.day_start FROM schools s"
        " LEFT JOIN classes c ON c.id = %s WHERE s.id = %s",
        (person["class_id"], person["school_id"]),
    ).fetchone()
    assert head is not None
    page = PersonPage(person, str(head[0]), str(head[2]), str(head[1]), shows)
    if user.role == "canteen_operator":  # as the API's _out: the counter needs no external id
        person["external_id"] = None
    cat = conn.execute(
        "SELECT name FROM meal_categories WHERE school_id = %s AND code = %s",
        (person["school_id"], person["meal_category"]),
    ).fetchone()
    page.category = str(cat[0]) if cat else ""
    if "cards" in shows:
        page.cards = store.page(conn, "cards", [("t.person_id = %s", person_id)],
                                order="revoked_at IS NULL DESC, issued_at DESC, card_key",
                                limit=100, offset=0)[1]  # fmt: skip
    if "guardians" in shows:
        page.guardians = _guardians(conn, person_id)
    if "eligibility" in shows:
        page.eligibility = _fetch(
            conn,
            "SELECT e.valid_from, e.valid_until, c.name, c.kind FROM meal_eligibility e"
            " JOIN meal_categories c ON c.id = e.category_id WHERE e.person_id = %s"
            " ORDER BY e.valid_from DESC, e.id DESC LIMIT 20",
            (person_id,),
        )
    if "restrictions" in shows:
        page.restrictions = domain.restrictions_of(conn, person_id)
    if "consents" in shows:
        page.consents = store.page(
            conn, "consents", [("t.person_id = %s", person_id)],
            order="granted_at DESC, id DESC", limit=20, offset=0,
        )[1]  # fmt: skip
    if "balance" in shows:
        page.balance = balance(conn, person_id)
    if "ledger" in shows:
        page.ledger_total, page.ledger = store.page(
            conn, "ledger_entries", [("t.person_id = %s", person_id)], order="id DESC",
            limit=LEDGER_ROWS, offset=0, columns=ENTRY_COLUMNS,
        )  # fmt: skip
    if "attendance" in shows:
        page.month = _month(conn, person, str(head[1]), head[3], month)
    return page


def _fetch(conn: Conn, query: str, params: tuple[Any, ...]) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def _guardians(conn: Conn, person_id: int) -> list[Row]:
    """The person's guardians (the API's ``guardians_of``) with their sign-in state, as the
    guardians page shows it (cloud/auth/invitations.py ``guardians_in_scope``)."""
    _, rows = domain.guardians_of(conn, person_id, 50, 0)
    for r in rows:
        state = conn.execute(
            "SELECT u.password_hash NOT LIKE '!%%', (SELECT i.expires_at FROM"
            " guardian_invitations i WHERE i.guardian_id = u.id AND i.used_at IS NULL"
            " AND i.revoked_at IS NULL AND i.expires_at > now()), u.locale"
            " FROM users u WHERE u.id = %s",
            (r["guardian_id"],),
        ).fetchone()
        assert state is not None
        r["signed_in"], r["invited_until"], r["locale"] = state
    return rows


def _month(conn: Conn, person: Row, tz: str, day_start: time, wanted: date | None) -> Month:
    """The person's days of one month in the school's time zone: present (first in by the
    school's day_start), late (after it, as the monthly attendance report counts it), absent (a
    school day, one on which anyone of the school came in, without them), or no school day."""
    today = datetime.now(ZoneInfo(tz)).date()
    first = (wanted or today).replace(day=1)
    after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    rows = conn.execute(
        "SELECT day, first_in FROM attendance WHERE person_id = %s AND day >= %s AND day < %s"
        " AND first_in IS NOT NULL",
        (person["id"], first, after),
    ).fetchall()
    came = {r[0]: r[1] for r in rows}
    school_days = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT day FROM attendance WHERE school_id = %s AND day >= %s AND day < %s"
            " AND first_in IS NOT NULL",
            (person["school_id"], first, after),
        ).fetchall()
    }
    zone = ZoneInfo(tz)
    m = Month(first, [])
    for week in calendar.Calendar(firstweekday=0).monthdatescalendar(first.year, first.month):
        line: list[Day | None] = []
        for d in week:
            if d.month != first.month:
                line.append(None)
                continue
            if d in came:
                late = came[d].astimezone(zone).time() > day_start
                line.append(Day(d, "late" if late else "present", came[d]))
                m.present += 1
                m.late += late
            elif d > today:
                line.append(Day(d, "future"))
            elif d in school_days:
                line.append(Day(d, "absent"))
                m.absent += 1
            else:
                line.append(Day(d, "none"))
        m.weeks.append(line)
    prev = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    m.prev = prev.strftime("%Y-%m")
    m.next = after.strftime("%Y-%m") if after <= today else None
    return m
