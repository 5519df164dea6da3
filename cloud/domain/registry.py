"""Registry of schools, devices, people and cards.

Functions take a psycopg connection and do not commit: the caller owns the transaction
(``with psycopg.connect(url) as conn:`` commits on success).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from cloud.domain.cardkey import is_card_key
from cloud.domain.whitelist import build_whitelist

MODES = ("door", "turnstile", "canteen")
DIRECTIONS = ("in", "out", "both")  # a device's placement (0012); events carry their reader
KINDS = ("student", "staff")
DEVICE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")  # protocol.md, "device id"

Conn = psycopg.Connection[Any]


def create_school(conn: Conn, id: str, name: str, site_key: bytes) -> None:
    if not id or not name:
        raise ValueError("school id and name are required")
    if not isinstance(site_key, bytes | bytearray) or len(site_key) < 16:
        raise ValueError("site_key must be at least 16 bytes")
    conn.execute(
        "INSERT INTO schools (id, name, site_key) VALUES (%s, %s, %s)",
        (id, name, bytes(site_key)),
    )


def register_device(
    conn: Conn,
    id: str,
    school_id: str,
    place: str,
    mode: str,
    reader: str,
    *,
    direction: str = "both",
) -> None:
    if not DEVICE_RE.fullmatch(id):
        raise ValueError(f"device id {id!r} must match [a-z0-9][a-z0-9-]{{0,31}}")
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} is not one of {DIRECTIONS}")
    conn.execute(
        "INSERT INTO devices (id, school_id, place, mode, reader, direction)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (id, school_id, place, mode, reader, direction),
    )


def add_person(
    conn: Conn,
    school_id: str,
    kind: str,
    full_name: str,
    *,
    meal_category: int = 0,
    access_profile: int = 0,
    allergen_mask: int = 0,
) -> int:
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    row = conn.execute(
        "INSERT INTO people (school_id, kind, full_name, meal_category, access_profile,"
        " allergen_mask) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (school_id, kind, full_name, meal_category, access_profile, allergen_mask),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_card(conn: Conn, person_id: int, card_key: str) -> None:
    if not is_card_key(card_key):
        raise ValueError(f"card key {card_key!r} is not 16 lowercase hex digits")
    conn.execute("INSERT INTO cards (card_key, person_id) VALUES (%s, %s)", (card_key, person_id))


def revoke_card(conn: Conn, card_key: str) -> None:
    conn.execute(
        "UPDATE cards SET revoked_at = now() WHERE card_key = %s AND revoked_at IS NULL",
        (card_key,),
    )


def compile_whitelist(conn: Conn, school_id: str, version: int) -> bytes:
    """The format-1 whitelist of the school's non-revoked cards of active people, and for
    alternative identification (D29-J, migration 0048) each person key with the flags of the
    methods whose consent is live (a PIN only once set) plus the PIN key of each live PIN."""
    rows = conn.execute(_COMPILE, (school_id, school_id)).fetchall()
    return build_whitelist(
        version,
        ((str(k), str(kind), int(m), int(a), int(al), int(f)) for k, kind, m, a, al, f in rows),
    )


# Live consents decide the flags at compile time: a withdrawal (or a PIN removed) leaves the
# person record without the flag in the next version, and the board refuses that method.
_COMPILE = """
SELECT c.card_key, p.kind, p.meal_category, p.access_profile, p.allergen_mask,
       CASE WHEN k.person_id IS NULL THEN 0 ELSE 64
            + CASE WHEN EXISTS (SELECT 1 FROM consents q WHERE q.person_id = p.id
                                AND q.method = 'qr' AND q.withdrawn_at IS NULL) THEN 16 ELSE 0 END
            + CASE WHEN EXISTS (SELECT 1 FROM consents q WHERE q.person_id = p.id
                                AND q.method = 'pin' AND q.withdrawn_at IS NULL)
                    AND EXISTS (SELECT 1 FROM altid_pins n WHERE n.person_id = p.id)
                   THEN 32 ELSE 0 END
       END
FROM cards c JOIN people p ON p.id = c.person_id
LEFT JOIN altid_keys k ON k.card_key = c.card_key
WHERE p.school_id = %s AND c.revoked_at IS NULL AND p.active
UNION ALL
SELECT n.pin_key, p.kind, 0, 0, 0, 128
FROM altid_pins n JOIN people p ON p.id = n.person_id
WHERE p.school_id = %s AND p.active
  AND EXISTS (SELECT 1 FROM consents q WHERE q.person_id = p.id
              AND q.method = 'pin' AND q.withdrawn_at IS NULL)
"""
