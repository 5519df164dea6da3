"""People: cards, guardians, meal eligibility, allergen restrictions (audited changes).

Functions take a connection inside the caller's transaction and do not commit.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import restrictions, store
from cloud.domain.cardkey import card_key as derive_card_key
from cloud.domain.errors import Conflict, Invalid, NotFound

Conn = psycopg.Connection[Any]
Row = dict[str, Any]


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_filter(
    conn: Conn,
    p: Principal,
    *,
    school: str | None = None,
    class_id: int | None = None,
    kind: str | None = None,
    active: bool | None = None,
    name: str | None = None,
    card_keys: list[str] | None = None,
) -> list[tuple[str, object]]:
    """The people ``p`` may list (guardians: their own children; staff: their schools' people),
    narrowed by the filters given, as ``store.page`` conditions on ``people t``. Used by
    ``GET /api/v1/people`` and the console's people page alike."""
    where: list[tuple[str, object]] = [
        ("t.school_id = %s", school),
        ("t.class_id = %s", class_id),
        ("t.kind = %s", kind),
        ("t.active = %s", active),
        ("t.full_name ILIKE '%%' || %s || '%%'", None if name is None else like_escape(name)),
        ("t.id IN (SELECT person_id FROM cards WHERE card_key = ANY(%s))", card_keys),
    ]
    if p.role in scope.PERSON_SCOPED:
        where.append(("t.id = ANY(%s)", scope.child_ids(conn, p)))
    else:
        where.append(("t.school_id = ANY(%s)", scope.school_ids(conn, p)))
    return where


def deactivate(conn: Conn, actor: Principal, person_id: int) -> Row:
    row = store.update(conn, actor, "people", person_id, {"active": False})
    for (key,) in conn.execute(
        "SELECT card_key FROM cards WHERE person_id = %s AND revoked_at IS NULL", (person_id,)
    ).fetchall():
        revoke_card(conn, actor, str(key), "left")
    return row


def add_card(
    conn: Conn, actor: Principal, person_id: int, *, uid_hex: str | None, card_key: str | None
) -> Row:
    person = store.get(conn, "people", person_id)
    if not person["active"]:
        raise Conflict(f"person {person_id} is inactive")
    if uid_hex is not None:
        site = conn.execute(
            "SELECT site_key FROM schools WHERE id = %s", (person["school_id"],)
        ).fetchone()
        assert site is not None
        card_key = derive_card_key(bytes(site[0]), bytes.fromhex(uid_hex))
    assert card_key is not None
    if conn.execute("SELECT 1 FROM cards WHERE card_key = %s", (card_key,)).fetchone():
        raise Conflict("this card is already registered (revoked cards cannot be reissued)")
    row = store.fetch_one(
        conn,
        "INSERT INTO cards (card_key, person_id) VALUES (%s, %s) RETURNING *",
        (card_key, person_id),
    )
    assert row is not None
    store.audit(conn, actor, "create", "cards", card_key, None, row, person["school_id"])
    return row


def revoke_card(conn: Conn, actor: Principal, card_key: str, reason: str) -> Row:
    before = store.get(conn, "cards", card_key, key_col="card_key", lock=True)
    if before["revoked_at"] is not None:
        raise Conflict(f"card {card_key} is already revoked")
    school = conn.execute(
        "SELECT school_id FROM people WHERE id = %s", (before["person_id"],)
    ).fetchone()
    row = store.fetch_one(
        conn,
        "UPDATE cards SET revoked_at = now(), revoke_reason = %s WHERE card_key = %s RETURNING *",
        (reason, card_key),
    )
    assert row is not None
    store.audit(
        conn, actor, "revoke", "cards", card_key, before, row, str(school[0]) if school else None
    )
    return row


GUARDIANS_SQL = (
    "SELECT g.guardian_id, g.person_id, g.relation, u.email, u.full_name"
    " FROM guardian_students g JOIN users u ON u.id = g.guardian_id WHERE g.person_id = %s"
)


def guardians_of(conn: Conn, person_id: int, limit: int, offset: int) -> tuple[int, list[Row]]:
    n = conn.execute(
        "SELECT count(*) FROM guardian_students WHERE person_id = %s", (person_id,)
    ).fetchone()
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(GUARDIANS_SQL + " ORDER BY g.guardian_id LIMIT %s OFFSET %s",
                    (person_id, limit, offset))  # fmt: skip
        rows = cur.fetchall()
    return (int(n[0]) if n else 0), rows


def require_guardian(conn: Conn, actor: Principal, school_id: str, guardian_id: int) -> None:
    """The guardian accounts a school may see: those its admins created and those already
    linked to a person of the school (an invitation the guardian accepts would be the third
    way; there are none yet). Any other id, another school's guardian or an account of another
    role, answers exactly as an id that does not exist (404): nothing to enumerate. A platform
    admin sees every account and is told when one is not a guardian."""
    row = conn.execute(
        "SELECT role, created_by_school = %s OR EXISTS (SELECT 1 FROM guardian_students g"
        " JOIN people pe ON pe.id = g.person_id WHERE g.guardian_id = u.id"
        " AND pe.school_id = %s) FROM users u WHERE u.id = %s",
        (school_id, school_id, guardian_id),
    ).fetchone()
    if actor.role == "platform_admin" and row is not None:
        if row[0] != "guardian":
            raise Invalid("guardian_id", f"user {guardian_id} is not a guardian (role {row[0]})")
        return
    if row is None or row[0] != "guardian" or not row[1]:
        raise NotFound(f"guardian {guardian_id} not found")


def link_guardian(
    conn: Conn, actor: Principal, person_id: int, guardian_id: int, relation: str
) -> Row:
    school = store.get(conn, "people", person_id)["school_id"]
    require_guardian(conn, actor, str(school), guardian_id)
    exists = conn.execute(
        "SELECT 1 FROM guardian_students WHERE guardian_id = %s AND person_id = %s",
        (guardian_id, person_id),
    ).fetchone()
    if exists:
        raise Conflict(f"user {guardian_id} is already a guardian of person {person_id}")
    conn.execute(
        "INSERT INTO guardian_students (guardian_id, person_id, relation) VALUES (%s, %s, %s)",
        (guardian_id, person_id, relation),
    )
    row = store.fetch_one(conn, GUARDIANS_SQL + " AND g.guardian_id = %s", (person_id, guardian_id))
    assert row is not None
    store.audit(conn, actor, "link", "guardian_students", f"{guardian_id}:{person_id}", None,
                row, school)  # fmt: skip
    return row


def unlink_guardian(conn: Conn, actor: Principal, person_id: int, guardian_id: int) -> None:
    before = store.fetch_one(conn, GUARDIANS_SQL + " AND g.guardian_id = %s",
                             (person_id, guardian_id))  # fmt: skip
    if before is None:
        raise NotFound(f"user {guardian_id} is not a guardian of person {person_id}")
    conn.execute(
        "DELETE FROM guardian_students WHERE guardian_id = %s AND person_id = %s",
        (guardian_id, person_id),
    )
    school = store.get(conn, "people", person_id)["school_id"]
    store.audit(conn, actor, "unlink", "guardian_students", f"{guardian_id}:{person_id}",
                before, None, school)  # fmt: skip


def set_eligibility(
    conn: Conn,
    actor: Principal,
    person_id: int,
    category_id: int,
    valid_from: date,
    valid_until: date | None,
) -> Row:
    person = store.get(conn, "people", person_id)
    cat = conn.execute(
        "SELECT code, school_id FROM meal_categories WHERE id = %s", (category_id,)
    ).fetchone()
    if cat is None or cat[1] != person["school_id"]:
        raise Invalid("category_id", f"meal category {category_id} does not exist at this school")
    row = store.insert(
        conn,
        actor,
        "meal_eligibility",
        {
            "person_id": person_id,
            "category_id": category_id,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "granted_by": actor.user_id,
        },
        school_id=str(person["school_id"]),
    )
    store.update(conn, actor, "people", person_id, {"meal_category": int(cat[0])})
    return row


def restrictions_of(conn: Conn, person_id: int) -> Row:
    """The enforced list and the school's confirmation state (cloud/domain/restrictions.py)."""
    return restrictions.restrictions_of(conn, person_id)


def set_restrictions(
    conn: Conn, actor: Principal, person_id: int, allergens: list[str], note: str
) -> Row:
    """One rule for every caller (D28-G): a guardian's removals wait for the school."""
    return restrictions.change(conn, actor, person_id, allergens, note)
