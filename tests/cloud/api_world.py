"""A small populated world for the API tests: one region, two districts, three schools, people,
devices, a dish, a meal category, a consent, and one user per role (with a bearer token)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from cloud.auth.passwords import hash_password
from cloud.domain import registry

PASSWORD = "correct horse battery"
PW_HASH = hash_password(PASSWORD)  # hashed once: argon2 is slow on purpose
CARD_ALICE = "0123456789abcdef"
CARD_AMIR = "1111111111111111"
CARD_BOB = "fedcba9876543210"
T_EVENT = "2025-10-09T08:53:20Z"

ROLES = (
    "platform_admin",
    "district_authority",
    "school_admin",
    "canteen_operator",
    "technician",
    "guardian",
    "student",  # Alice's own account (D28-O)
)


@dataclass
class World:
    ids: dict[str, Any] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)  # role -> user id
    tokens: dict[str, str] = field(default_factory=dict)  # role -> bearer token

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _one(conn: psycopg.Connection[Any], q: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(q, params).fetchone()
    assert row is not None
    return row[0]


def add_user(conn: psycopg.Connection[Any], email: str, role: str, **scope: Any) -> int:
    return int(
        _one(
            conn,
            "INSERT INTO users (email, password_hash, role, district_id, school_id)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (email, PW_HASH, role, scope.get("district_id"), scope.get("school_id")),
        )
    )


def add_event(
    conn: psycopg.Connection[Any],
    device: str,
    seq: int,
    school: str,
    person: int | None,
    card: str,
) -> None:
    conn.execute(
        "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind, reader,"
        " result, reason, board_time, clock_synced, uptime_ms, occurred_at) VALUES"
        " (%s, 1, %s, %s, %s, %s, 'tap', 'in', 'granted', 'ok', %s, true, 1000, %s)",
        (device, seq, school, person, card, T_EVENT, T_EVENT),
    )


def build(url: str) -> World:
    w = World()
    with psycopg.connect(url) as conn:
        region = _one(conn, "INSERT INTO regions (name) VALUES ('Almaty') RETURNING id")
        d1 = _one(
            conn,
            "INSERT INTO districts (region_id, name) VALUES (%s, 'D1') RETURNING id",
            (region,),
        )
        d2 = _one(
            conn,
            "INSERT INTO districts (region_id, name) VALUES (%s, 'D2') RETURNING id",
            (region,),
        )
        for school, key, district in (("s1", b"k", d1), ("s2", b"q", d1), ("s3", b"z", d2)):
            registry.create_school(conn, school, f"School {school}", key * 32)
            conn.execute("UPDATE schools SET district_id = %s WHERE id = %s", (district, school))
        registry.register_device(conn, "gate-1", "s1", "entrance", "turnstile", "mfrc522")
        registry.register_device(conn, "gate-2", "s2", "entrance", "turnstile", "mfrc522")
        registry.register_device(conn, "gate-3", "s3", "entrance", "turnstile", "mfrc522")
        c1 = _one(conn, "INSERT INTO classes (school_id, name) VALUES ('s1', '5A') RETURNING id")
        alice = registry.add_person(conn, "s1", "student", "Alice Aliyeva")
        amir = registry.add_person(conn, "s1", "student", "Amir Amirov")
        bob = registry.add_person(conn, "s2", "staff", "Bob Bekov")
        cara = registry.add_person(conn, "s3", "student", "Cara Caspian")
        conn.execute("UPDATE people SET class_id = %s WHERE id = %s", (c1, alice))
        registry.add_card(conn, alice, CARD_ALICE)
        registry.add_card(conn, amir, CARD_AMIR)
        registry.add_card(conn, bob, CARD_BOB)
        dish = _one(
            conn,
            "INSERT INTO dishes (school_id, name_kk, name_ru, price)"
            " VALUES ('s1', 'Палау', 'Плов', 350) RETURNING id",
        )
        dish2 = _one(
            conn,
            "INSERT INTO dishes (school_id, name_kk, name_ru, price)"
            " VALUES ('s2', 'Сорпа', 'Суп', 200) RETURNING id",
        )
        cat = _one(
            conn,
            "INSERT INTO meal_categories (school_id, kind, name, price)"
            " VALUES ('s1', 'free', 'Free', 0) RETURNING id",
        )
        w.users = {
            "platform_admin": add_user(conn, "root@qadam.kz", "platform_admin"),
            "district_authority": add_user(
                conn, "d1@qadam.kz", "district_authority", district_id=d1
            ),
            "school_admin": add_user(conn, "admin1@qadam.kz", "school_admin", school_id="s1"),
            "canteen_operator": add_user(
                conn, "cook1@qadam.kz", "canteen_operator", school_id="s1"
            ),
            "technician": add_user(conn, "tech1@qadam.kz", "technician", school_id="s1"),
            "guardian": add_user(conn, "mum@qadam.kz", "guardian"),
            "student": add_user(conn, "alice@s1.pupil", "student", school_id="s1"),
        }
        conn.execute(  # the student account is Alice's own (D28-O)
            "INSERT INTO student_accounts (user_id, person_id) VALUES (%s, %s)",
            (w.users["student"], alice),
        )
        admin3 = add_user(conn, "admin3@qadam.kz", "school_admin", school_id="s3")
        conn.execute(
            "INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)",
            (w.users["guardian"], alice),
        )
        consent = _one(
            conn,
            "INSERT INTO consents (person_id, method, granted_by)"
            " VALUES (%s, 'face', %s) RETURNING id",
            (alice, w.users["guardian"]),
        )
        add_event(conn, "gate-1", 1, "s1", alice, CARD_ALICE)
        add_event(conn, "gate-1", 2, "s1", amir, CARD_AMIR)
        add_event(conn, "gate-2", 1, "s2", bob, CARD_BOB)
        add_event(conn, "gate-3", 1, "s3", cara, "2222222222222222")
    w.ids = {
        "region_id": region,
        "district_id": d1,
        "other_district_id": d2,
        "school_id": "s1",
        "class_id": c1,
        "person_id": alice,
        "alice": alice,
        "amir": amir,
        "bob": bob,
        "cara": cara,
        "card_key": CARD_ALICE,
        "guardian_id": w.users["guardian"],
        "device_id": "gate-1",
        "dish_id": dish,
        "other_dish_id": dish2,
        "category_id": cat,
        "consent_id": consent,
        "admin3": admin3,
    }
    return w


def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    r = client.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


EMAILS = {
    "platform_admin": "root@qadam.kz",
    "district_authority": "d1@qadam.kz",
    "school_admin": "admin1@qadam.kz",
    "canteen_operator": "cook1@qadam.kz",
    "technician": "tech1@qadam.kz",
    "guardian": "mum@qadam.kz",
    "student": "alice@s1.pupil",
}


def login_all(client: TestClient, w: World, url: str | None = None) -> None:
    """A token per role. With ``url``, sessions are written straight into the database (argon2
    verification is slow on purpose; test_auth.py covers the real login)."""
    if url is None:
        for role in ROLES:
            w.tokens[role] = login(client, EMAILS[role])
        return
    with psycopg.connect(url) as conn:
        for role in ROLES:
            token = secrets.token_urlsafe(32)
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, expires_at)"
                " VALUES (%s, %s, now() + interval '1 hour')",
                (hashlib.sha256(token.encode()).digest(), w.users[role]),
            )
            w.tokens[role] = token
