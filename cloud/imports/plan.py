"""Validate every row of an import against the school's data and work out what it would change.

Nothing here writes: the same plan serves the dry run (reported) and the real run (applied by
cloud/imports/apply.py in the same transaction). Errors name the row as the user sees it, the
field, the value and the reason; a row with any error is left out of the plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cloud.domain.cardkey import card_key
from cloud.domain.formats import check_card_uid
from cloud.imports import accounts as accountsmod
from cloud.imports import iin as iinmod
from cloud.imports.columns import NOT_STORED, Kind, map_header
from cloud.imports.reader import Table

Conn = psycopg.Connection[Any]

MEAL_ALIASES: dict[str, str] = {
    **dict.fromkeys(("free", "бесплатное", "бесплатно", "бесплатный", "бесплатная", "тегін"),
                    "free"),
    **dict.fromkeys(("reduced", "льготное", "льготный", "льготная", "льгота", "жеңілдетілген",
                     "жеңілдікті"), "reduced"),
    **dict.fromkeys(("paid", "платное", "платно", "платный", "платная", "ақылы"), "paid"),
}  # fmt: skip
MEAL_HINT = "use free, reduced or paid (бесплатное, льготное, платное; тегін, жеңілдетілген, ақылы)"
EMAIL_RE = re.compile(r"[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+")
SPLIT_RE = re.compile(r"[\s,;]+")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class RowError:
    row: int
    column: str | None
    value: str | None
    reason: str


@dataclass
class NewPerson:
    row: int
    iin: str
    full_name: str
    class_key: str | None
    meal_code: int


@dataclass
class PersonUpdate:
    row: int
    id: int
    iin: str
    before: dict[str, Any]
    after: dict[str, Any]  # changed fields only; class_id may be a class key ("new:<key>")


@dataclass
class Plan:
    kind: Kind
    school_id: str
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    not_stored_columns: list[str] = field(default_factory=list)
    new_classes: dict[str, str] = field(default_factory=dict)  # key -> name as written
    class_ids: dict[str, int] = field(default_factory=dict)  # key -> id (existing)
    people_new: list[NewPerson] = field(default_factory=list)
    people_upd: list[PersonUpdate] = field(default_factory=list)
    people_ids: dict[str, int] = field(default_factory=dict)  # iin -> id (existing)
    cards_new: list[tuple[str, str]] = field(default_factory=list)  # (card key, iin)
    eligibility: list[tuple[str, int]] = field(default_factory=list)  # (iin, category id)
    guardians_new: dict[str, str] = field(default_factory=dict)  # email -> full name
    guardian_ids: dict[str, int] = field(default_factory=dict)  # email -> id (existing)
    links_new: list[tuple[str, int]] = field(default_factory=list)  # (email, person id)
    accounts_column: bool = False  # the file has a student_account column (D29-E)
    accounts_new: list[str] = field(default_factory=list)  # iins of pupils to get an account
    bad_rows: set[int] = field(default_factory=set)

    data_rows: set[int] = field(default_factory=set)

    @property
    def valid(self) -> int:
        return len(self.data_rows - self.bad_rows)

    def error(self, row: int, column: str | None, value: str | None, reason: str) -> None:
        self.errors.append(RowError(row, column, value, reason))
        self.bad_rows.add(row)

    def would_create(self) -> dict[str, int]:
        if self.kind == "guardians":
            return {"guardians": len(self.guardians_new), "links": len(self.links_new)}
        made = {
            "people": len(self.people_new),
            "classes": len(self.new_classes),
            "cards": len(self.cards_new),
            "eligibility": len(self.eligibility),
        }
        if self.accounts_column:
            made["student_accounts"] = len(self.accounts_new)
        return made

    def would_update(self) -> dict[str, int]:
        if self.kind == "guardians":
            return {"guardians": 0}
        return {"people": len(self.people_upd)}


def clean_name(value: str) -> tuple[str, str | None]:
    name = " ".join(value.split())
    if not name:
        return name, "full name is required"
    if len(name) > 200:
        return name, "full name is longer than 200 characters"
    if CONTROL_RE.search(name):
        return name, "full name contains control characters"
    return name, None


def clean_iin(value: str) -> tuple[str, str | None]:
    v = re.sub(r"\s+", "", value)
    if not v:
        return v, "IIN is required (it is the key that makes a re-import update, not duplicate)"
    if len(v) == 11 and v.isdigit() and iinmod.problem("0" + v) is None:
        v = "0" + v  # Excel drops the leading zero of pupils born 2000-2009
    return v, iinmod.problem(v)


def class_key(name: str) -> str:
    return "".join(name.split()).casefold()


def plan_import(conn: Conn, school_id: str, kind: Kind, table: Table, create_classes: bool) -> Plan:
    plan = Plan(kind, school_id, rows=len(table.rows), data_rows={n for n, _ in table.rows})
    cols, ignored, problems = map_header(kind, table.header)
    plan.ignored_columns = ignored
    plan.not_stored_columns = [f for f in NOT_STORED if f in cols]
    plan.accounts_column = "student_account" in cols
    for p in problems:
        plan.error(table.header_row, None, None, p)
    if problems:
        plan.bad_rows.update(plan.data_rows)
        return plan

    def getter(cells: list[str]) -> Callable[[str], str]:
        return lambda f: cells[cols[f]] if f in cols and cols[f] < len(cells) else ""

    if kind == "guardians":
        _plan_guardians(conn, plan, table, getter)
    else:
        _plan_people(conn, plan, table, getter, create_classes)
    return plan


@dataclass
class _PersonRow:
    row: int
    name: str
    iin: str
    class_name: str | None
    meal_code: int | None
    category_id: int | None
    cards: list[tuple[str, str]]  # (uid as written, key)
    account: bool | None = None  # the student_account column said yes


def _plan_people(
    conn: Conn,
    plan: Plan,
    table: Table,
    getter: Callable[[list[str]], Callable[[str], str]],
    create_classes: bool,
) -> None:
    school = plan.school_id
    person_kind = "student" if plan.kind == "students" else "staff"
    site = conn.execute("SELECT site_key FROM schools WHERE id = %s", (school,)).fetchone()
    assert site is not None
    site_key = bytes(site[0])
    classes = {
        class_key(str(name)): int(cid)
        for cid, name in conn.execute(
            "SELECT id, name FROM classes WHERE school_id = %s", (school,)
        ).fetchall()
    }
    categories = {
        str(k): (int(cid), int(code))
        for k, cid, code in conn.execute(
            "SELECT kind, id, code FROM meal_categories WHERE school_id = %s", (school,)
        ).fetchall()
    }

    parsed: list[_PersonRow] = []
    for n, cells in table.rows:
        get = getter(cells)
        name, why = clean_name(get("full_name"))
        if why:
            plan.error(n, "full_name", get("full_name"), why)
        iin, why = clean_iin(get("iin"))
        if why:
            plan.error(n, "iin", get("iin"), why)
        class_name: str | None = " ".join(get("class").split()) or None
        if class_name is not None:
            if len(class_name) > 50:
                plan.error(n, "class", class_name, "class name is longer than 50 characters")
            elif class_key(class_name) not in classes and not create_classes:
                plan.error(n, "class", class_name,
                           f"class {class_name!r} does not exist at this school"
                           " (create_classes=false)")  # fmt: skip
        meal_code = category_id = None
        meal = get("meal").strip()
        if meal:
            meal_kind = MEAL_ALIASES.get(meal.casefold().replace("ё", "е"))
            if meal_kind is None:
                plan.error(n, "meal", meal, f"unknown meal category {meal!r}: {MEAL_HINT}")
            elif meal_kind not in categories:
                plan.error(n, "meal", meal,
                           f"this school has no {meal_kind} meal category yet: create it first"
                           " (POST /api/v1/meal-categories)")  # fmt: skip
            else:
                category_id, meal_code = categories[meal_kind]
        cards: list[tuple[str, str]] = []
        for token in SPLIT_RE.split(get("cards")):
            if not token:
                continue
            try:
                uid = check_card_uid(token)  # the API's rule too (cloud/domain/formats.py)
            except ValueError as exc:
                plan.error(n, "cards", token, str(exc))
                continue
            key = card_key(site_key, uid)
            if key not in (k for _, k in cards):
                cards.append((token, key))
        account, why = accountsmod.parse_flag(get("student_account"))
        if why:
            plan.error(n, "student_account", get("student_account"), why)
        parsed.append(_PersonRow(n, name, iin, class_name, meal_code, category_id, cards,
                                 account))  # fmt: skip

    iins = [r.iin for r in parsed if r.iin]
    existing = {
        str(row[4]): row
        for row in conn.execute(
            "SELECT id, kind, full_name, class_id, external_id, meal_category, active"
            " FROM people WHERE school_id = %s AND external_id = ANY(%s)",
            (school, iins),
        ).fetchall()
    }
    keys = [k for r in parsed for _, k in r.cards]
    owners = {
        str(k): (int(pid), revoked)
        for k, pid, revoked in conn.execute(
            "SELECT card_key, person_id, revoked_at IS NOT NULL FROM cards"
            " WHERE card_key = ANY(%s)",
            (keys,),
        ).fetchall()
    }

    have_account = accountsmod.with_accounts(conn, [int(row[0]) for row in existing.values()])
    seen_iin: dict[str, int] = {}
    seen_card: dict[str, int] = {}
    for r in parsed:
        n = r.row
        old = existing.get(r.iin)
        if r.iin:
            if r.iin in seen_iin:
                plan.error(n, "iin", r.iin, f"the same IIN is also in row {seen_iin[r.iin]}")
            else:
                seen_iin[r.iin] = n
        if old is not None:
            pid, okind, active = int(old[0]), str(old[1]), bool(old[6])
            if okind != person_kind:
                plan.error(n, "iin", r.iin,
                           f"this IIN belongs to a {okind} of this school (person {pid}),"
                           f" not a {person_kind}")  # fmt: skip
            elif not active:
                plan.error(n, "iin", r.iin,
                           f"this IIN belongs to person {pid}, who is deactivated: reactivate"
                           f" them first (PATCH /api/v1/people/{pid})")  # fmt: skip
        for token, key in r.cards:
            if key in seen_card:
                plan.error(n, "cards", token, f"card {token} is also in row {seen_card[key]}")
                continue
            seen_card[key] = n
            owner = owners.get(key)
            if owner is None:
                continue
            owner_id, revoked = owner
            if revoked:
                plan.error(
                    n, "cards", token, f"card {token} was revoked: a revoked card is never reissued"
                )
            elif old is None or owner_id != int(old[0]):
                plan.error(
                    n,
                    "cards",
                    token,
                    f"card {token} already belongs to another person (id {owner_id})",
                )

        if n in plan.bad_rows:
            continue
        ckey = class_key(r.class_name) if r.class_name else None
        if ckey is not None and ckey not in classes:
            plan.new_classes.setdefault(ckey, r.class_name or ckey)
        new_keys = [(k, r.iin) for _, k in r.cards if k not in owners]
        plan.cards_new.extend(new_keys)
        if r.account and (old is None or int(old[0]) not in have_account):
            plan.accounts_new.append(r.iin)
        if old is None:
            plan.people_new.append(NewPerson(n, r.iin, r.name, ckey, r.meal_code or 0))
            if r.category_id is not None:
                plan.eligibility.append((r.iin, r.category_id))
            continue
        pid = int(old[0])
        plan.people_ids[r.iin] = pid
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        if r.name != old[2]:
            before["full_name"], after["full_name"] = old[2], r.name
        if ckey is not None:
            cid: int | str = classes.get(ckey, "new:" + ckey)
            if cid != old[3]:
                before["class_id"], after["class_id"] = old[3], cid
        if r.meal_code is not None and r.meal_code != old[5]:
            before["meal_category"], after["meal_category"] = old[5], r.meal_code
            assert r.category_id is not None
            plan.eligibility.append((r.iin, r.category_id))
        if after:
            plan.people_upd.append(PersonUpdate(n, pid, r.iin, before, after))
    plan.class_ids = classes


def _plan_guardians(
    conn: Conn, plan: Plan, table: Table, getter: Callable[[list[str]], Callable[[str], str]]
) -> None:
    parsed: list[tuple[int, str, str, list[tuple[str, str]]]] = []
    for n, cells in table.rows:
        get = getter(cells)
        name, why = clean_name(get("full_name"))
        if why:
            plan.error(n, "full_name", get("full_name"), why)
        email = get("email").strip().lower()
        if not email:
            plan.error(n, "email", "", "e-mail is required (guardians log in with it)")
        elif len(email) > 254 or not EMAIL_RE.fullmatch(email):
            plan.error(n, "email", get("email"), "not a valid e-mail address")
        children: list[tuple[str, str]] = []
        tokens = [t for t in SPLIT_RE.split(get("child_iins")) if t]
        if not tokens:
            plan.error(n, "child_iins", "", "at least one child IIN is required")
        for token in tokens:
            v, why = clean_iin(token)
            if why:
                plan.error(n, "child_iins", token, why)
            else:
                children.append((token, v))
        parsed.append((n, name, email, children))

    child_iins = [v for *_, ch in parsed for _, v in ch]
    students = {
        str(ext): (int(pid), bool(active))
        for pid, ext, active in conn.execute(
            "SELECT id, external_id, active FROM people WHERE school_id = %s"
            " AND kind = 'student' AND external_id = ANY(%s)",
            (plan.school_id, child_iins),
        ).fetchall()
    }
    emails = [e for _, _, e, _ in parsed if e]
    users = {
        str(email): (int(uid), str(role), bool(active))
        for uid, email, role, active in conn.execute(
            "SELECT id, email, role, active FROM users WHERE email = ANY(%s)", (emails,)
        ).fetchall()
    }
    links = {
        (int(g), int(p))
        for g, p in conn.execute(
            "SELECT guardian_id, person_id FROM guardian_students WHERE guardian_id = ANY(%s)",
            ([u[0] for u in users.values()],),
        ).fetchall()
    }

    first: dict[str, tuple[int, str]] = {}  # email -> (row, name)
    planned: set[tuple[str, int]] = set()
    for n, name, email, children in parsed:
        if email and name:
            if email in first and first[email][1].casefold() != name.casefold():
                row0, name0 = first[email]
                plan.error(
                    n,
                    "email",
                    email,
                    f"the same e-mail is in row {row0} with another name ({name0})",
                )
            first.setdefault(email, (n, name))
        user = users.get(email)
        if user is not None:
            if user[1] != "guardian":
                plan.error(
                    n, "email", email, f"this e-mail belongs to a {user[1]} account, not a guardian"
                )
            elif not user[2]:
                plan.error(n, "email", email, "this guardian account is deactivated")
        pids: list[int] = []
        for token, v in children:
            child = students.get(v)
            if child is None:
                plan.error(
                    n,
                    "child_iins",
                    token,
                    f"no student with IIN {v} at this school (import students first)",
                )
            elif not child[1]:
                plan.error(
                    n,
                    "child_iins",
                    token,
                    f"the student with IIN {v} is deactivated (person {child[0]})",
                )
            else:
                pids.append(child[0])
        if n in plan.bad_rows:
            continue
        if user is None:
            plan.guardians_new.setdefault(email, name)
        else:
            plan.guardian_ids[email] = user[0]
        for pid in pids:
            if (email, pid) in planned or (user is not None and (user[0], pid) in links):
                continue
            planned.add((email, pid))
            plan.links_new.append((email, pid))
