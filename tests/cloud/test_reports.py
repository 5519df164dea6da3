"""Monthly reports against the real database: a tiny month (October 2025) with known totals
and planted anomalies.

District D1 (Медеу): s1 "Школа №1" (Asia/Almaty) and s2; district D2: s3.
s1 prices: free 0, reduced 200 -> 250, full (paid category) 600 -> 700 from 15 Oct local.

s1 meals (free and reduced only): Айгерим Серикова (free) 1, 2, 16, 17 Oct -> 600+600+700+700;
Данияр Ахметов (reduced, no eligibility history) 1 and 16 Oct -> cost 600+700, family 200+250;
Мадина Оразова (free from 10 Oct by eligibility history) 17 Oct -> 700.
Planted anomalies: Мадина fed on 17 Oct but not on site; Данияр present on 2 Oct (a canteen
day) but not fed. Not anomalies: Данияр present on Saturday 4 Oct (no canteen service), Мадина
present on 2 Oct (not yet eligible), Paul (paid) present on 2 Oct and not fed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_world import add_user
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.auth.principal import Principal
from cloud.domain import registry
from cloud.reports import build as build_mod
from cloud.reports import render, service
from cloud.settings import Settings
from cloud.workers import reports as reports_worker

MONTH = "2025-10"
TZ = "Asia/Almaty"


@dataclass
class RWorld:
    ids: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def _one(conn: psycopg.Connection[Any], q: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(q, params).fetchone()
    assert row is not None
    return row[0]


class Builder:
    def __init__(self, conn: psycopg.Connection[Any], seq: int = 0) -> None:
        self.conn = conn
        self.seq = seq

    def category(self, school: str, kind: str, name: str, price: int) -> int:
        return int(
            _one(
                self.conn,
                "INSERT INTO meal_categories (school_id, kind, name, price) VALUES (%s, %s, %s, %s)"
                " RETURNING id",
                (school, kind, name, price),
            )
        )

    def price_from(self, category: int, local: str, price: int) -> None:
        self.conn.execute(
            "INSERT INTO meal_category_prices (category_id, valid_from, price)"
            " VALUES (%s, %s::timestamp AT TIME ZONE %s, %s)",
            (category, local, TZ, price),
        )

    def person(self, school: str, kind: str, name: str, cls: int | None, code: int = 0) -> int:
        pid = registry.add_person(self.conn, school, kind, name)
        self.conn.execute(
            "UPDATE people SET class_id = %s, meal_category = %s WHERE id = %s", (cls, code, pid)
        )
        return pid

    def meal(self, school: str, person: int | None, day: str, hhmm: str, code: int) -> None:
        self.seq += 1
        self.conn.execute(
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id, meal_category,"
            " occurred_at, day) VALUES ('cant-' || %s, 1, %s, %s, %s, %s,"
            " (%s::date + %s::time) AT TIME ZONE (SELECT timezone FROM schools WHERE id = %s),"
            " %s::date)",
            (school, self.seq, school, person, code, day, hhmm, school, day),
        )

    def present(self, school: str, person: int, day: str, first_in: str, last_out: str) -> None:
        self.conn.execute(
            "INSERT INTO attendance (person_id, day, school_id, first_in, last_out, passages)"
            " SELECT %s, %s::date, %s, (%s::date + %s::time) AT TIME ZONE s.timezone,"
            " (%s::date + %s::time) AT TIME ZONE s.timezone, 2 FROM schools s WHERE s.id = %s",
            (person, day, school, day, first_in, day, last_out, school),
        )


def session(conn: psycopg.Connection[Any], user_id: int) -> str:
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, expires_at)"
        " VALUES (%s, %s, now() + interval '1 hour')",
        (hashlib.sha256(token.encode()).digest(), user_id),
    )
    return token


def build(url: str) -> RWorld:
    w = RWorld()
    with psycopg.connect(url) as conn:
        b = Builder(conn)
        region = _one(conn, "INSERT INTO regions (name) VALUES ('Алматы') RETURNING id")
        d1 = _one(
            conn, "INSERT INTO districts (region_id, name) VALUES (%s, 'Медеу') RETURNING id",
            (region,),
        )  # fmt: skip
        d2 = _one(
            conn, "INSERT INTO districts (region_id, name) VALUES (%s, 'Бостандық') RETURNING id",
            (region,),
        )  # fmt: skip
        for sid, name, key, district in (
            ("s1", "Школа №1", b"k", d1),
            ("s2", "School 2", b"q", d1),
            ("s3", "School 3", b"z", d2),
        ):
            registry.create_school(conn, sid, name, key * 32)
            conn.execute("UPDATE schools SET district_id = %s WHERE id = %s", (district, sid))
        for sid in ("s1", "s2", "s3"):
            registry.register_device(conn, f"cant-{sid}", sid, "canteen", "canteen", "pn532")
        c5a = _one(conn, "INSERT INTO classes (school_id, name) VALUES ('s1', '5А') RETURNING id")
        free1 = b.category("s1", "free", "Бесплатное", 0)
        red1 = b.category("s1", "reduced", "Льготное", 200)
        paid1 = b.category("s1", "paid", "Платное", 600)
        b.price_from(red1, "2025-10-15 00:00", 250)
        b.price_from(paid1, "2025-10-15 00:00", 700)
        b.category("s2", "free", "Free", 0)
        b.category("s2", "paid", "Paid", 500)
        b.category("s3", "free", "Free", 0)
        b.category("s3", "paid", "Paid", 900)

        aig = b.person("s1", "student", "Айгерим Серикова", c5a, 1)
        dan = b.person("s1", "student", "Данияр Ахметов", c5a, 2)
        mad = b.person("s1", "student", "Мадина Оразова", c5a, 1)
        paul = b.person("s1", "student", "Paul Paid", c5a, 3)
        iva = b.person("s1", "staff", "Ольга Иванова", None)
        conn.execute(
            "INSERT INTO meal_eligibility (person_id, category_id, valid_from)"
            " VALUES (%s, %s, '2025-10-10')",
            (mad, free1),
        )
        for day in ("2025-10-01", "2025-10-02", "2025-10-16", "2025-10-17"):
            b.present("s1", aig, day, "08:05", "14:30")
            b.meal("s1", aig, day, "11:00", 1)
        for day in ("2025-10-01", "2025-10-16"):
            b.present("s1", dan, day, "08:20", "14:00")
            b.meal("s1", dan, day, "11:05", 2)
        b.present("s1", dan, "2025-10-02", "08:40", "14:00")  # planted: present, not fed
        b.present("s1", dan, "2025-10-04", "09:00", "12:00")  # Saturday: no canteen service
        b.present("s1", mad, "2025-10-02", "08:00", "13:00")  # not yet eligible
        b.meal("s1", mad, "2025-10-17", "11:10", 1)  # planted: fed, not on site
        b.present("s1", paul, "2025-10-01", "08:00", "14:00")
        b.meal("s1", paul, "2025-10-01", "11:20", 3)  # paid: not in the report
        b.present("s1", paul, "2025-10-02", "08:00", "14:00")
        b.present("s1", iva, "2025-10-01", "08:45", "17:10")  # 15 min late
        b.present("s1", iva, "2025-10-02", "08:10", "17:00")
        b.meal("s1", None, "2025-10-01", "11:30", 1)  # an unknown card
        b.meal("s1", aig, "2025-09-30", "11:00", 1)  # another month
        s2p = b.person("s2", "student", "Sam Second", None, 1)
        for day in ("2025-10-01", "2025-10-02", "2025-10-03"):
            b.present("s2", s2p, day, "08:00", "14:00")
            b.meal("s2", s2p, day, "11:00", 1)
        s3p = b.person("s3", "student", "Tom Third", None, 1)
        b.present("s3", s3p, "2025-10-01", "08:00", "14:00")
        b.meal("s3", s3p, "2025-10-01", "11:00", 1)

        users = {
            "platform_admin": add_user(conn, "root@r.kz", "platform_admin"),
            "district_authority": add_user(conn, "d1@r.kz", "district_authority", district_id=d1),
            "district_authority_2": add_user(conn, "d2@r.kz", "district_authority", district_id=d2),
            "school_admin": add_user(conn, "admin1@r.kz", "school_admin", school_id="s1"),
            "school_admin_2": add_user(conn, "admin2@r.kz", "school_admin", school_id="s2"),
            "canteen_operator": add_user(conn, "cook@r.kz", "canteen_operator", school_id="s1"),
            "technician": add_user(conn, "tech@r.kz", "technician", school_id="s1"),
            "guardian": add_user(conn, "mum@r.kz", "guardian"),
        }
        for who, uid in users.items():
            w.tokens[who] = session(conn, uid)
    w.ids = {"d1": d1, "d2": d2, "aig": aig, "dan": dan, "mad": mad, "paul": paul, "iva": iva,
             "free1": free1, **{f"user_{k}": v for k, v in users.items()}}  # fmt: skip
    return w


# ---- tests ----------------------------------------------------------------------------------


@pytest.fixture
def world(database_url: str) -> RWorld:
    return build(database_url)


@pytest.fixture
def client(database_url: str, world: RWorld) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        yield c


def _by_name(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {x["name"]: x for x in lines}


def test_meal_report_totals_to_the_tenge(database_url: str, world: RWorld) -> None:
    with psycopg.connect(database_url) as conn:
        c = build_mod.meals(conn, "s1", date(2025, 10, 1))
    lines = _by_name(c["lines"])
    assert set(lines) == {"Айгерим Серикова", "Данияр Ахметов", "Мадина Оразова"}
    aig, dan, mad = lines["Айгерим Серикова"], lines["Данияр Ахметов"], lines["Мадина Оразова"]
    assert (aig["class"], aig["quantity"], aig["cost"], aig["paid"], aig["subsidy"]) == (
        "5А", 4, "2600.00", "0.00", "2600.00")  # fmt: skip
    assert (dan["quantity"], dan["cost"], dan["paid"], dan["subsidy"]) == (
        2, "1300.00", "450.00", "850.00")  # fmt: skip
    assert (mad["quantity"], mad["cost"], mad["subsidy"]) == (1, "700.00", "700.00")
    assert aig["category"] == "Бесплатное (free)" and dan["category"] == "Льготное (reduced)"
    cats = {x["category"]: x for x in c["by_category"]}
    free = {"category": "Бесплатное (free)", "pupils": 2, "quantity": 5, "cost": "3300.00",
            "paid": "0.00", "subsidy": "3300.00", "unpriced": 0}  # fmt: skip
    assert cats["Бесплатное (free)"] == free
    assert cats["Льготное (reduced)"]["subsidy"] == "850.00"
    assert c["total"] == {"pupils": 3, "quantity": 7, "cost": "4600.00", "paid": "450.00",
                          "subsidy": "4150.00", "unpriced": 0}  # fmt: skip
    assert c["unknown_card_receipts"] == 1
    assert c["school"]["district"] == "Медеу"


def test_district_totals(database_url: str, world: RWorld) -> None:
    with psycopg.connect(database_url) as conn:
        d = build_mod.district_meals(conn, world.ids["d1"], date(2025, 10, 1))
    assert [s["school_id"] for s in d["schools"]] == ["s1", "s2"]  # not s3 (other district)
    s2 = d["schools"][1]
    assert s2["total"]["cost"] == "1500.00" and s2["total"]["quantity"] == 3
    assert d["schools"][0]["total"]["subsidy"] == "4150.00"
    assert d["total"]["cost"] == "6100.00"
    assert d["total"]["paid"] == "450.00"
    assert d["total"]["subsidy"] == "5650.00"
    assert d["total"]["quantity"] == 10
    kinds = {x["category"]: x for x in d["by_category"]}
    assert kinds["free"]["subsidy"] == "4800.00" and kinds["reduced"]["subsidy"] == "850.00"


def test_crosscheck_finds_exactly_the_planted_anomalies(database_url: str, world: RWorld) -> None:
    with psycopg.connect(database_url) as conn:
        x = build_mod.crosscheck(conn, "s1", date(2025, 10, 1))
    assert [(r["name"], r["date"], r["meals"], r["first_meal"]) for r in x["fed_not_present"]] == [
        ("Мадина Оразова", "2025-10-17", 1, "11:10:00")
    ]
    assert [(r["name"], r["date"], r["first_in"]) for r in x["present_not_fed"]] == [
        ("Данияр Ахметов", "2025-10-02", "08:40:00")
    ]
    assert x["anomalies"] == 2


def test_attendance_report_times_and_lateness(database_url: str, world: RWorld) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE schools SET day_start = '08:15' WHERE id = 's1'")
        a = build_mod.attendance(conn, "s1", date(2025, 10, 1))
    iva = [x for x in a["lines"] if x["name"] == "Ольга Иванова"]
    assert [(x["date"], x["first_in"], x["last_out"], x["late_min"]) for x in iva] == [
        ("2025-10-01", "08:45:00", "17:10:00", 30),
        ("2025-10-02", "08:10:00", "17:00:00", 0),
    ]
    assert iva[0]["kind"] == "staff"
    people = _by_name(a["people"])
    dan = {"person_id": world.ids["dan"], "name": "Данияр Ахметов", "kind": "student",
           "class": "5А", "days_present": 4, "days_late": 4,
           "late_min": 5 + 5 + 25 + 45, "by_qr": 0, "by_pin": 0}  # fmt: skip
    assert people["Данияр Ахметов"] == dan
    assert a["lines"][0]["kind"] == "student"  # students first, then staff
    assert a["total"]["people"] == 5 and a["total"]["present_days"] == 13


def test_attendance_report_counts_passages_by_qr_code_and_pin(
    database_url: str, world: RWorld
) -> None:
    # D29-J: a passage without a card is an event with its method; the month's report says how
    # many each person had, by the school's local month (Asia/Almaty, +05:00 here)
    dan = world.ids["dan"]
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT ensure_event_partitions('2025-09-01', '2025-12-01')")
        registry.register_device(conn, "alt-gate", "s1", "gate", "door", "in", direction="in")
        for seq, at, method, result in (
            (1, "2025-09-30 20:00+00", "qr", "granted"),  # 1 October 01:00 local: October
            (2, "2025-10-02 03:00+00", "qr", "granted"),
            (3, "2025-10-03 03:00+00", "pin", "granted"),
            (4, "2025-10-04 03:00+00", "qr", "denied"),  # refused: not a passage
            (5, "2025-10-05 03:00+00", None, "granted"),  # a card
            (6, "2025-10-31 19:30+00", "pin", "granted"),  # 1 November 00:30 local: November
        ):
            conn.execute(
                "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
                " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at,"
                " method) VALUES ('alt-gate', 1, %s, 's1', %s, 'aaaaaaaaaaaaaaaa', 'tap', 'in',"
                " %s, 'ok', %s, true, 1000, %s, %s)",
                (seq, dan, result, at, at, method),
            )
        a = build_mod.attendance(conn, "s1", date(2025, 10, 1))
    people = _by_name(a["people"])
    assert (people["Данияр Ахметов"]["by_qr"], people["Данияр Ахметов"]["by_pin"]) == (2, 1)
    assert all((p["by_qr"], p["by_pin"]) == (0, 0) for n, p in people.items()
               if n != "Данияр Ахметов")  # fmt: skip
    table = render.document(a, None).tables[0]
    assert table.columns[-2:] == ["By QR", "By PIN"]
    row = next(r for r in table.rows if r[0] == "Данияр Ахметов")
    assert row[-2:] == [2, 1]


def test_scheduler_on_the_first_is_idempotent_and_reminds_on_the_fourth(
    database_url: str, world: RWorld
) -> None:
    def tick(local: str) -> dict[str, list[str]]:
        with psycopg.connect(database_url) as conn:
            at = conn.execute("SELECT %s::timestamp AT TIME ZONE %s", (local, TZ)).fetchone()
            assert at is not None
            return service.tick(conn, at[0])

    for s in ("s1", "s2", "s3"):
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE schools SET timezone = %s WHERE id = %s", (TZ, s))
    # 31 Oct, late evening: October is not over, the previous month is September
    done = tick("2025-11-01 00:30")
    assert sorted(done["generated"]) == sorted(
        f"{s}:2025-10:{k}" for s in ("s1", "s2", "s3") for k in ("meals", "attendance")
    )
    assert done["reminders"] == []
    for _ in range(2):
        assert tick("2025-11-01 09:00") == {"generated": [], "reminders": []}
    assert tick("2025-11-03 23:59") == {"generated": [], "reminders": []}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT school_id, kind, status FROM reports ORDER BY 1, 2").fetchall()
        assert len(rows) == 6 and {r[2] for r in rows} == {"draft"}
        admin2 = Principal(world.ids["user_school_admin_2"], "admin2@r.kz", "school_admin",
                           school_id="s2")  # fmt: skip
        for kind in ("meals", "attendance"):
            service.approve(conn, admin2, "s2", date(2025, 10, 1), kind, False)  # type: ignore[arg-type]
    done = tick("2025-11-04 07:00")
    assert sorted(done["reminders"]) == ["s1:2025-10", "s3:2025-10"]  # s2 approved in time
    assert tick("2025-11-04 12:00")["reminders"] == []  # once per school-month
    with psycopg.connect(database_url) as conn:
        out = conn.execute(
            "SELECT idempotency_key, payload FROM outbox WHERE kind = 'report_reminder' ORDER BY 1"
        ).fetchall()
    assert [o[0] for o in out] == ["report_reminder:s1:2025-10", "report_reminder:s3:2025-10"]
    p = out[0][1]
    assert p["pending"] == ["attendance", "meals"] and p["deadline"] == "2025-11-05"
    assert p["recipients"] == [{"user_id": world.ids["user_school_admin"], "email": "admin1@r.kz"}]


def test_worker_run_once_uses_settings(database_url: str, world: RWorld) -> None:
    from datetime import UTC, datetime

    s = Settings(database_url=database_url, reports_reminder_day=2)
    done = reports_worker.run_once(s, datetime(2025, 11, 2, 12, tzinfo=UTC))
    assert len(done["generated"]) == 6 and len(done["reminders"]) == 3


def _get(client: TestClient, w: RWorld, who: str, path: str, **params: Any) -> Any:
    return client.get(path, params=params, headers=w.auth(who))


def test_approval_flow(client: TestClient, world: RWorld, database_url: str) -> None:
    w = world
    base = "/api/v1/reports/schools/s1"
    # a live preview before anything is stored
    r = _get(client, w, "school_admin", f"{base}/meals", month=MONTH)
    assert r.status_code == 200 and r.json()["report"] is None
    assert r.json()["content"]["total"]["cost"] == "4600.00"
    # approving what was not generated
    body = {"month": MONTH, "kind": "meals"}
    r = client.post(f"{base}/approve", json=body, headers=w.auth("school_admin"))
    assert r.status_code == 404, r.text
    r = client.post(f"{base}/generate", json=body, headers=w.auth("school_admin"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "draft" and r.json()["summary"]["anomalies"] == 2
    # the cross-check must be acknowledged before sign-off
    r = client.post(f"{base}/approve", json=body, headers=w.auth("school_admin"))
    assert r.status_code == 409 and "anomalies" in r.json()["detail"]
    r = client.post(f"{base}/approve", json={**body, "acknowledge_anomalies": True},
                    headers=w.auth("school_admin"))  # fmt: skip
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["status"] == "approved" and j["approved_by_name"] == "admin1@r.kz"
    # frozen: a late meal changes the live check, not the approved report
    with psycopg.connect(database_url) as conn:
        Builder(conn, seq=1000).meal("s1", w.ids["aig"], "2025-10-20", "11:00", 1)
    r = _get(client, w, "district_authority", f"{base}/meals", month=MONTH)
    assert r.json()["report"]["status"] == "approved"
    assert r.json()["content"]["total"]["cost"] == "4600.00"
    x = _get(client, w, "school_admin", f"{base}/crosscheck", month=MONTH).json()
    assert x["content"]["anomalies"] == 3
    # regenerating an approved report is refused; approving again is a no-op
    r = client.post(f"{base}/generate", json=body, headers=w.auth("school_admin"))
    assert r.status_code == 409
    r = client.post(f"{base}/approve", json=body, headers=w.auth("platform_admin"))
    assert r.status_code == 200 and r.json()["approved_by_name"] == "admin1@r.kz"
    lst = _get(client, w, "district_authority", "/api/v1/reports", month=MONTH).json()
    assert [(i["school_id"], i["kind"], i["status"]) for i in lst["items"]] == [
        ("s1", "meals", "approved")
    ]
    with psycopg.connect(database_url) as conn:
        acts = conn.execute(
            "SELECT action FROM audit_log WHERE entity = 'reports' ORDER BY id"
        ).fetchall()
    assert [a[0] for a in acts] == ["create", "update"]
    # bad input
    r = client.post(f"{base}/generate", json={"month": "2025-13", "kind": "meals"},
                    headers=w.auth("school_admin"))  # fmt: skip
    assert r.status_code == 422


def test_role_access(client: TestClient, world: RWorld) -> None:
    w = world
    m = MONTH

    def st(who: str, path: str) -> int:
        return int(_get(client, w, who, path, month=m).status_code)

    s1, s2, s3 = (f"/api/v1/reports/schools/{s}/meals" for s in ("s1", "s2", "s3"))
    d1 = f"/api/v1/reports/districts/{w.ids['d1']}/meals"
    d2 = f"/api/v1/reports/districts/{w.ids['d2']}/meals"
    assert [st("platform_admin", p) for p in (s1, s2, s3, d1, d2)] == [200] * 5
    assert [st("district_authority", p) for p in (s1, s2, s3, d1, d2)] == [200, 200, 404, 200, 404]
    assert [st("district_authority_2", p) for p in (s1, s3, d1, d2)] == [404, 200, 404, 200]
    assert [st("school_admin", p) for p in (s1, s2, s3, d1)] == [200, 404, 404, 403]
    for who in ("canteen_operator", "technician", "guardian"):
        assert [st(who, p) for p in (s1, d1)] == [403, 403], who
        assert st(who, "/api/v1/reports/schools/s1/attendance") == 403
    assert client.get(s1, params={"month": m}).status_code == 401
    body = {"month": m, "kind": "attendance"}
    for who, code in (("district_authority", 403), ("school_admin_2", 404),
                      ("canteen_operator", 403), ("school_admin", 200)):  # fmt: skip
        r = client.post("/api/v1/reports/schools/s1/generate", json=body, headers=w.auth(who))
        assert r.status_code == code, (who, r.text)
    # a school admin lists only their own school's reports
    assert _get(client, w, "school_admin_2", "/api/v1/reports").json()["total"] == 0
    assert _get(client, w, "school_admin", "/api/v1/reports").json()["total"] == 1
    r = _get(client, w, "school_admin_2", "/api/v1/reports", school_id="s1")
    assert r.status_code == 404


def test_csv_and_xlsx(client: TestClient, world: RWorld) -> None:
    from openpyxl import load_workbook

    r = _get(client, world, "school_admin", "/api/v1/reports/schools/s1/meals", month=MONTH,
             format="csv")  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="meals-s1-2025-10.csv"' in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [
        "Айгерим Серикова",
        "5А",
        "Бесплатное (free)",
        "4",
        "2600.00",
        "0.00",
        "2600.00",
    ] in rows
    assert ["School total", "3", "7", "4600.00", "450.00", "4150.00"] in rows
    r = _get(client, world, "district_authority", f"/api/v1/reports/districts/{world.ids['d1']}"
             "/meals", month=MONTH, format="xlsx")  # fmt: skip
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.content))
    values = [list(row) for ws in wb.worksheets for row in ws.iter_rows(values_only=True)]
    assert ["District total", 4, 10, Decimal("6100"), Decimal("450"), Decimal("5650")] in [
        [Decimal(str(v)) if isinstance(v, float | int) and i >= 3 else v for i, v in enumerate(r)]
        for r in values
    ]
    r = _get(client, world, "school_admin", "/api/v1/reports/schools/s1/attendance",
             month=MONTH, format="xlsx")  # fmt: skip
    ws = load_workbook(io.BytesIO(r.content)).worksheets[1]
    flat = [list(row) for row in ws.iter_rows(values_only=True)]
    assert ["Ольга Иванова", "staff", None, "2025-10-01", "08:45:00", "17:10:00", 2, 15] in flat


def _pdf_text(path: Path) -> str:
    # poppler-utils must be installed (./dev test installs it): fail, never skip
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                         capture_output=True, timeout=60)  # fmt: skip
    return out.stdout.decode()


def test_pdf_renders_names_and_totals(client: TestClient, world: RWorld, tmp_path: Path) -> None:
    assert shutil.which("pdftotext") and shutil.which("pdftoppm"), "install poppler-utils"
    r = _get(client, world, "school_admin", "/api/v1/reports/schools/s1/meals", month=MONTH,
             format="pdf")  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    pdf = tmp_path / "meals.pdf"
    pdf.write_bytes(r.content)
    text = _pdf_text(pdf)
    for needle in ("Айгерим Серикова", "Данияр Ахметов", "Мадина Оразова", "Школа №1",
                   "4600.00", "4150.00", "3300.00", "School total", "Медеу"):  # fmt: skip
        assert needle in text, needle
    assert "Paul Paid" not in text
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True, timeout=60)  # fmt: skip
    png = next(tmp_path.glob("page*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    if os.environ.get("QADAM_REPORT_PNG"):  # to look at it: QADAM_REPORT_PNG=/tmp/x.png
        shutil.copy(png, os.environ["QADAM_REPORT_PNG"])
        shutil.copy(pdf, os.environ["QADAM_REPORT_PNG"] + ".pdf")
    for path, needle in (
        ("/api/v1/reports/schools/s1/attendance", "Ольга Иванова"),
        ("/api/v1/reports/schools/s1/crosscheck", "Мадина Оразова"),
        (f"/api/v1/reports/districts/{world.ids['d1']}/meals", "6100.00"),
    ):
        who = "platform_admin"
        r = _get(client, world, who, path, month=MONTH, format="pdf")
        assert r.status_code == 200, r.text
        other = tmp_path / "other.pdf"
        other.write_bytes(r.content)
        assert needle in _pdf_text(other), (path, needle)


def test_ingest_keeps_the_rollup_current(database_url: str, world: RWorld) -> None:
    """Canteen taps through the real ingest writer: the statement trigger adds them to the
    rollup in the ingest transaction, priced as at the tap (T0 = 9 Oct 2025: before the change)."""
    from cloud_helpers import T0, batch_doc, dumps, topic

    from cloud.ingest.decode import Batch, decode
    from cloud.ingest.writer import write

    card = "00000000000000a1"
    with psycopg.connect(database_url, autocommit=True) as conn:
        registry.add_card(conn, world.ids["dan"], card)
        doc = batch_doc(dev="cant-s1", seqs=range(1, 4), card=card, reader="canteen")
        doc["events"][2]["t"] = T0 + 8 * 86400  # 17 Oct: after the price change
        b = decode(topic("qadam", "cant-s1"), dumps(doc))
        assert isinstance(b, Batch)
        assert write(conn, [b]).inserted == 3
        assert write(conn, [b]).inserted == 0  # a retransmission adds nothing
        q = ("SELECT code, price, paid, quantity FROM meal_rollup WHERE person_id = %s"
             " AND month = '2025-10-01' ORDER BY price")  # fmt: skip
        live = conn.execute(q, (world.ids["dan"],)).fetchall()
        assert [(r[0], str(r[1]), str(r[2]), r[3]) for r in live] == [
            (2, "600.00", "200.00", 3),  # 1 Oct + two taps on 9 Oct
            (2, "700.00", "250.00", 2),  # 16 Oct + one tap on 17 Oct
        ]
        conn.execute("SELECT refresh_meal_rollup('s1', '2025-10-01')")
        assert conn.execute(q, (world.ids["dan"],)).fetchall() == live


def test_social_wallet_records_and_the_report_price_each_meal_alike(
    database_url: str, world: RWorld
) -> None:
    """Issue #13 item 10: across the mid-month price change (and for a meal with a dish), the
    Social Wallet record of every meal carries the price, family share and subsidy the monthly
    report counts for it: both read the meal's own price (meal_receipt_price, D24-F)."""
    with psycopg.connect(database_url) as conn:
        dish = _one(
            conn,
            "INSERT INTO dishes (school_id, name_kk, name_ru, price)"
            " VALUES ('s1', 'Палау', 'Плов', 950) RETURNING id",
        )
        conn.execute(  # 20 Oct: Данияр's reduced meal of a dish priced 950
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id, meal_category,"
            " occurred_at, day, dish_id) VALUES ('cant-s1', 2, 1, 's1', %s, 2,"
            " '2025-10-20 11:00' AT TIME ZONE %s, '2025-10-20', %s)",
            (world.ids["dan"], TZ, dish),
        )
        report = build_mod.meals(conn, "s1", date(2025, 10, 1))
        records = conn.execute(
            "SELECT d.person_id, o.payload FROM sw_deliveries d JOIN outbox o ON o.id = d.outbox_id"
            " WHERE d.school_id = 's1' AND d.day >= '2025-10-01' AND d.day < '2025-11-01'"
            "   AND d.meal_category IN ('free', 'reduced') AND d.person_id IS NOT NULL"
        ).fetchall()
    sums: dict[int, list[Decimal]] = {}
    for person, payload in records:
        acc = sums.setdefault(person, [Decimal(0)] * 4)
        acc[0] += 1
        acc[1] += Decimal(payload["price"])
        acc[2] += Decimal(payload["pupil_paid"])
        acc[3] += Decimal(payload["subsidy"])
    names = {world.ids["aig"]: "Айгерим Серикова", world.ids["dan"]: "Данияр Ахметов",
             world.ids["mad"]: "Мадина Оразова"}  # fmt: skip
    lines = _by_name(report["lines"])
    assert set(names) == set(sums)
    for person, (n, price, paid, subsidy) in sums.items():
        line = lines[names[person]]
        assert (line["quantity"], line["cost"], line["paid"], line["subsidy"]) == (
            n, f"{price:.2f}", f"{paid:.2f}", f"{subsidy:.2f}"), names[person]  # fmt: skip
    # the figures themselves: 600 before 15 Oct, 700 after; the dish at 950
    assert lines["Айгерим Серикова"]["cost"] == "2600.00"
    assert (lines["Данияр Ахметов"]["cost"], lines["Данияр Ахметов"]["paid"]) == (
        "2250.00", "700.00")  # fmt: skip
