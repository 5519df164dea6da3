"""Bulk import (POST /api/v1/schools/{id}/import): CSV in UTF-8/BOM and Windows-1251, XLSX,
every kind of bad row with its exact reason, dry runs that change nothing, all-or-nothing real
runs, idempotent re-runs, guardians, limits, and a 10,000-row file."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest
from api_world import World, build, login_all
from fastapi.testclient import TestClient
from openpyxl import Workbook
from test_api_domain import snapshot

from cloud.api.app import create_app
from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.imports import iin
from cloud.settings import Settings

SITE_S1 = b"k" * 32
URL = "/api/v1/schools/s1/import"

# valid IINs: pupils born 2010-2011 (digit 7 = 5/6), staff born 1985
IIN_A = iin.make(date(2010, 3, 14), 1)
IIN_B = iin.make(date(2011, 9, 1), 20, female=True)
IIN_C = iin.make(date(2010, 12, 31), 300)
IIN_T = iin.make(date(1985, 5, 20), 40, female=True)
IIN_08 = iin.make(date(2008, 1, 2), 5)  # starts with 0: Excel drops it


def key(uid: str) -> str:
    return card_key(SITE_S1, bytes.fromhex(uid))


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO meal_categories (school_id, kind, name, price)"
            " VALUES ('s1', 'reduced', 'Reduced', 150)"
        )
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w


def post(
    c: TestClient,
    w: World,
    kind: str,
    data: bytes,
    *,
    dry_run: bool,
    name: str = "list.csv",
    role: str = "school_admin",
    url: str = URL,
    **params: Any,
) -> Any:
    q = {"kind": kind, "dry_run": str(dry_run).lower(), **params}
    return c.post(url, params=q, files={"file": (name, data)}, headers=w.auth(role))


def csv_bytes(lines: list[str], *, encoding: str = "utf-8-sig", delim: str = ";") -> bytes:
    return ("\r\n".join(delim.join(cells) for cells in (line.split("|") for line in lines)) +
            "\r\n").encode(encoding)  # fmt: skip


STUDENTS = [
    "ФИО|Класс|ИИН|Номер карты|Категория питания",
    f"Аманов Арман|7А|{IIN_A}|04A1B2C3|бесплатное",
    f"Беккер Бота|7 а|{IIN_B}|04:11:22:33:44:55:66, 0A0B0C0D|",
    f"Серікова Сая|5A|{IIN_C}||льготное",
]


def whitelist_keys(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        blob = registry.compile_whitelist(conn, "s1", 7)
    n = (len(blob) - 32) // 12
    return {blob[32 + i * 12 : 40 + i * 12].hex() for i in range(n)}


def without_audit(snap: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snap.items() if k != "audit_log"}


# ---- IIN ----------------------------------------------------------------------------------
def test_iin_validation() -> None:
    assert iin.problem(IIN_A) is None and iin.problem(IIN_T) is None
    # the second weight set: find 11 digits whose first sum mod 11 is 10
    head = next(
        h
        for s in range(10000)
        if (h := f"1003145{s:04d}")
        and sum(int(d) * w for d, w in zip(h, iin.W1, strict=True)) % 11 == 10
        and iin.check_digit(h) is not None
    )
    k2 = sum(int(d) * w for d, w in zip(head, iin.W2, strict=True)) % 11
    assert iin.check_digit(head) == k2 and iin.problem(head + str(k2)) is None
    wrong = IIN_A[:11] + str((int(IIN_A[11]) + 1) % 10)
    assert iin.problem(wrong) == "IIN check digit is wrong (typo?)"
    assert iin.problem("12345") == "IIN must be exactly 12 digits"
    lost_zero = "IIN must be exactly 12 digits (a leading zero lost in Excel?)"
    assert iin.problem(IIN_08[1:]) == lost_zero
    assert iin.problem("101314500010") == "IIN digits 1-6 are not a valid date of birth (YYMMDD)"
    assert iin.problem("100314000011") == "IIN digit 7 (century and sex) must be 1-6"
    assert iin.problem(iin.make(date(2099, 1, 1), 1)) == "IIN date of birth is in the future"


# ---- happy paths --------------------------------------------------------------------------
def test_students_csv_utf8_bom_semicolon_dry_run_then_real_then_idempotent(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    data = csv_bytes(STUDENTS)
    before = snapshot(database_url)
    r = post(c, w, "students", data, dry_run=True)
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["format"] == "csv utf-8-sig ;"
    assert (rep["rows"], rep["valid"], rep["errors"]) == (3, 3, [])
    # "7А" and "7 а" are one new class; 5A exists
    assert rep["new_classes"] == ["7А"]
    assert rep["would_create"] == {"people": 3, "classes": 1, "cards": 3, "eligibility": 2}
    assert rep["would_update"] == {"people": 0}
    assert snapshot(database_url) == before  # the dry run changed nothing, audit log included

    r = post(c, w, "students", data, dry_run=False)
    assert r.status_code == 200, r.text
    assert r.json()["applied"] is True
    with psycopg.connect(database_url) as conn:
        people = conn.execute(
            "SELECT p.external_id, p.full_name, c.name, p.meal_category, p.kind FROM people p"
            " LEFT JOIN classes c ON c.id = p.class_id WHERE p.external_id IS NOT NULL"
            " ORDER BY p.full_name"
        ).fetchall()
        elig = conn.execute("SELECT count(*) FROM meal_eligibility").fetchone()
        audit = conn.execute(
            "SELECT action, entity, after FROM audit_log WHERE entity = 'imports'"
        ).fetchall()
    assert people == [
        (IIN_A, "Аманов Арман", "7А", 1, "student"),
        (IIN_B, "Беккер Бота", "7А", 0, "student"),
        (IIN_C, "Серікова Сая", "5A", 2, "student"),
    ]
    assert elig == (2,)
    assert len(audit) == 1 and audit[0][0] == "create"
    summary = audit[0][2]
    assert summary["created"] == rep["would_create"] and len(summary["people_created"]) == 3
    assert summary["file"] == "list.csv" and len(summary["sha256"]) == 64
    new_keys = {key("04A1B2C3"), key("04112233445566"), key("0A0B0C0D")}
    assert new_keys <= whitelist_keys(database_url)

    after = snapshot(database_url)
    r = post(c, w, "students", data, dry_run=False)
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["would_create"] == {"people": 0, "classes": 0, "cards": 0, "eligibility": 0}
    assert again["would_update"] == {"people": 0}
    assert without_audit(snapshot(database_url)) == without_audit(after)


def test_cp1251_csv_with_commas_and_kazakh_headers(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    # Kazakh letters are not in Windows-1251: a KZ school's cp1251 file is Russian only
    lines = ["ФИО,Класс,ИИН,Номер карты,Категория питания",
             f"Ёлкин Пётр,9Б,{IIN_A},04a1b2c3,Бесплатное"]  # fmt: skip
    data = csv_bytes(lines, encoding="cp1251", delim=",")
    r = post(c, w, "students", data, dry_run=False)
    assert r.status_code == 200, r.text
    assert r.json()["format"] == "csv cp1251 ,"
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT full_name, meal_category FROM people WHERE external_id = %s", (IIN_A,)
        ).fetchone()
    assert row == ("Ёлкин Пётр", 1)
    assert key("04A1B2C3") in whitelist_keys(database_url)


def test_xlsx_first_sheet_numeric_iin_and_staff(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Сотрудники"
    ws.append(["Full name", "IIN", "Card UID", "Meal category", "Notes"])
    ws.append(["Tamara Tulegenova", int(IIN_T), "DEADBEEF", "paid", "x"])
    ws.append([None, None, None, None, None])  # a blank row is skipped
    ws.append(["Old Zero", int(IIN_08), None, None, None])  # 11 digits in Excel
    wb.create_sheet("Other").append(["ignored"])
    buf = io.BytesIO()
    wb.save(buf)
    r = post(c, w, "staff", buf.getvalue(), dry_run=True, name="staff.xlsx")
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["format"] == "xlsx" and rep["ignored_columns"] == ["Notes"]
    # paid: s1 has no paid category
    assert rep["errors"] == [
        {"row": 2, "column": "meal", "value": "paid",
         "reason": "this school has no paid meal category yet: create it first"
                   " (POST /api/v1/meal-categories)"},
    ]  # fmt: skip
    assert rep["valid"] == 1 and rep["would_create"]["people"] == 1
    ws["D2"] = "reduced"
    buf = io.BytesIO()
    wb.save(buf)
    r = post(c, w, "staff", buf.getvalue(), dry_run=False, name="staff.xlsx")
    assert r.status_code == 200, r.text
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT external_id, kind, meal_category FROM people WHERE external_id IS NOT NULL"
            " ORDER BY 1"
        ).fetchall()
    assert rows == [(IIN_08, "staff", 0), (IIN_T, "staff", 2)]
    assert key("DEADBEEF") in whitelist_keys(database_url)


def test_update_on_reimport_is_audited(world: tuple[TestClient, World], database_url: str) -> None:
    c, w = world
    assert post(c, w, "students", csv_bytes(STUDENTS), dry_run=False).status_code == 200
    changed = [STUDENTS[0], f"Аманов Арман Серікұлы|5A|{IIN_A}|04A1B2C3|льготное"]
    r = post(c, w, "students", csv_bytes(changed), dry_run=True)
    assert r.json()["would_update"] == {"people": 1}
    assert r.json()["would_create"] == {"people": 0, "classes": 0, "cards": 0, "eligibility": 1}
    r = post(c, w, "students", csv_bytes(changed), dry_run=False)
    assert r.status_code == 200, r.text
    with psycopg.connect(database_url) as conn:
        person = conn.execute(
            "SELECT p.id, p.full_name, c.name, p.meal_category FROM people p"
            " JOIN classes c ON c.id = p.class_id WHERE external_id = %s",
            (IIN_A,),
        ).fetchone()
        (summary,) = conn.execute(
            "SELECT after FROM audit_log WHERE entity = 'imports' ORDER BY id DESC LIMIT 1"
        ).fetchone() or (None,)
    assert person is not None and person[1:] == ("Аманов Арман Серікұлы", "5A", 2)
    (upd,) = summary["people_updated"]
    assert upd["id"] == person[0]
    assert upd["before"]["full_name"] == "Аманов Арман" and upd["before"]["meal_category"] == 1
    assert upd["after"] == {"full_name": "Аманов Арман Серікұлы", "class_id": w.ids["class_id"],
                            "meal_category": 2}  # fmt: skip


# ---- bad rows -----------------------------------------------------------------------------
def test_every_bad_row_is_reported_and_nothing_changes(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    # Bob (s2) owns CARD_BOB's key; give a person of s1 a card owned by an s1 pupil instead
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE people SET external_id = %s WHERE id = %s", (IIN_T, w.ids["amir"]))
        conn.execute("INSERT INTO cards (card_key, person_id) VALUES (%s, %s)",
                     (key("11223344"), w.ids["alice"]))  # fmt: skip
    wrong = IIN_A[:11] + str((int(IIN_A[11]) + 1) % 10)
    lines = [
        "ФИО|Класс|ИИН|Номер карты|Категория питания|Примечание",
        f"|7А|{IIN_A}||",  # 2 missing name
        f"Bad Iin|7А|{wrong}||",  # 3
        f"Dup One|7А|{IIN_B}||",  # 4
        f"Dup Two|7А|{IIN_B}||",  # 5 duplicate IIN
        f"Bad Hex|7А|{IIN_C}|04A1B2C3 XYZ123|",  # 6 bad hex (and a good card)
        f"Taken|7А|{iin.make(date(2012, 2, 2), 1)}|11223344|",  # 7 card of Alice
        f"Dup Card|7А|{iin.make(date(2012, 2, 3), 1)}|04-A1-B2-C3|",  # 8 card also in row 6
        f"Meal|7А|{iin.make(date(2012, 2, 4), 1)}||по желанию",  # 9
        f"Amir Again|7А|{IIN_T}||",  # 10 Amir's IIN: a valid update
        "No Iin|7А|||",  # 11
        f"Long class|{'x' * 51}|{iin.make(date(2012, 2, 5), 1)}||",  # 12
        f"Good|7А|{iin.make(date(2012, 2, 6), 1)}|AABBCCDD|free",  # 13 valid
    ]
    data = csv_bytes(lines)
    before = snapshot(database_url)
    r = post(c, w, "students", data, dry_run=True)
    assert r.status_code == 200, r.text
    rep = r.json()
    errs = [(e["row"], e["column"], e["value"], e["reason"]) for e in rep["errors"]]
    bad_hex = "card UID 'XYZ123' is not 4, 7 or 10 bytes of hex (8, 14 or 20 hex digits)"
    bad_meal = (
        "unknown meal category 'по желанию': use free, reduced or paid"
        " (бесплатное, льготное, платное; тегін, жеңілдетілген, ақылы)"
    )
    no_iin = "IIN is required (it is the key that makes a re-import update, not duplicate)"
    taken = f"card 11223344 already belongs to another person (id {w.ids['alice']})"
    assert errs == [
        (2, "full_name", "", "full name is required"),
        (3, "iin", wrong, "IIN check digit is wrong (typo?)"),
        (6, "cards", "XYZ123", bad_hex),
        (9, "meal", "по желанию", bad_meal),
        (11, "iin", "", no_iin),
        (12, "class", "x" * 51, "class name is longer than 50 characters"),
        (5, "iin", IIN_B, "the same IIN is also in row 4"),
        (7, "cards", "11223344", taken),
        (8, "cards", "04-A1-B2-C3", "card 04-A1-B2-C3 is also in row 6"),
    ]
    assert rep["rows"] == 12 and rep["valid"] == 3  # rows 4, 10 (updates Amir) and 13
    assert rep["ignored_columns"] == ["Примечание"]
    assert snapshot(database_url) == before

    r = post(c, w, "students", data, dry_run=False)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["report"]["applied"] is False and len(body["detail"]) == 9
    assert body["detail"][0] == {"type": "value_error", "loc": ["body", "file", 2, "full_name"],
                                 "msg": "full name is required", "input": ""}  # fmt: skip
    assert snapshot(database_url) == before


def test_kind_clash_inactive_person_revoked_card_and_class_policy(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE people SET external_id = %s WHERE id = %s", (IIN_T, w.ids["amir"]))
        conn.execute("UPDATE people SET external_id = %s, active = false WHERE id = %s",
                     (IIN_A, w.ids["alice"]))  # fmt: skip
        conn.execute(
            "INSERT INTO cards (card_key, person_id, revoked_at, revoke_reason)"
            " VALUES (%s, %s, now(), 'lost')",
            (key("99887766"), w.ids["amir"]),
        )
    lines = ["Full name|Class|IIN|Cards", f"Amir|5A|{IIN_T}|", f"Alice|5A|{IIN_A}|",
             f"New|9Z|{IIN_C}|99887766"]  # fmt: skip
    before = snapshot(database_url)
    r = post(c, w, "staff", csv_bytes(lines, delim=","), dry_run=True)
    errs = [(e["row"], e["column"], e["reason"]) for e in r.json()["errors"]]
    amir, alice = w.ids["amir"], w.ids["alice"]
    assert errs == [
        (2, "iin", f"this IIN belongs to a student of this school (person {amir}), not a staff"),
        (3, "iin", f"this IIN belongs to a student of this school (person {alice}), not a staff"),
        (4, "cards", "card 99887766 was revoked: a revoked card is never reissued"),
    ]
    assert r.json()["ignored_columns"] == ["Class"]  # staff have no class
    r = post(c, w, "students", csv_bytes(lines[:1] + lines[2:], delim=","), dry_run=True,
             create_classes="false")  # fmt: skip
    errs = [(e["row"], e["column"], e["reason"]) for e in r.json()["errors"]]
    assert errs == [
        (3, "class", "class '9Z' does not exist at this school (create_classes=false)"),
        (2, "iin", f"this IIN belongs to person {alice}, who is deactivated: reactivate them"
                   f" first (PATCH /api/v1/people/{alice})"),
        (3, "cards", "card 99887766 was revoked: a revoked card is never reissued"),
    ]  # fmt: skip
    assert snapshot(database_url) == before


def test_missing_columns_and_unreadable_files(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    before = snapshot(database_url)
    r = post(c, w, "students", csv_bytes(["Класс|Номер карты", "5A|04A1B2C3"]), dry_run=True)
    assert r.status_code == 200
    assert [e["reason"][:30] for e in r.json()["errors"]] == [
        "missing column full_name: name",
        "missing column iin: name it on",
    ]
    assert r.json()["valid"] == 0
    assert post(c, w, "students", csv_bytes(["Класс", "5A"]), dry_run=False).status_code == 422
    for data, msg in (
        (b"", "the file is empty"),
        (b"\xd0\xcf\x11\xe0rest", "old Excel .xls is not supported: save as .xlsx or CSV"),
        (b"PK\x03\x04broken", "not a readable .xlsx file (BadZipFile)"),
        (b"\x98\x98\x98;x\n", "cannot decode the file: it is neither UTF-8 nor Windows-1251 text"),
        (b"a;b\x00\n", "the file contains NUL characters: not a text CSV"),
    ):
        r = post(c, w, "students", data, dry_run=True)
        assert r.status_code == 422, (data, r.text)
        assert r.json()["detail"][0]["msg"] == msg
    assert post(c, w, "pupils", csv_bytes(STUDENTS), dry_run=True).status_code == 422
    assert snapshot(database_url) == before


# ---- guardians ----------------------------------------------------------------------------
def test_guardians_created_linked_idempotent(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    assert post(c, w, "students", csv_bytes(STUDENTS), dry_run=False).status_code == 200
    unknown = iin.make(date(2013, 4, 4), 7)
    lines = [
        "ФИО|Email|Телефон|ИИН ребенка",
        f"Аманова Гүлнар|Gulnar@Mail.kz|+7 701 000 0000|{IIN_A}, {IIN_B}",
        f"Аманова Гүлнар|gulnar@mail.kz||{IIN_C}",  # same guardian, third child
        f"Ghost Parent|ghost@mail.kz||{unknown}",
        f"Admin As Parent|admin1@qadam.kz||{IIN_A}",
        f"Other Name|gulnar@mail.kz||{IIN_A}",
        f"No Mail|||{IIN_A}",
        f"Bad Mail|no-at-sign||{IIN_A}",
        f"Mum Existing|mum@qadam.kz||{IIN_B}",  # the world's guardian: link only
    ]
    data = csv_bytes(lines)
    before = snapshot(database_url)
    r = post(c, w, "guardians", data, dry_run=True)
    assert r.status_code == 200, r.text
    rep = r.json()
    errs = [(e["row"], e["column"], e["value"], e["reason"]) for e in rep["errors"]]
    no_child = f"no student with IIN {unknown} at this school (import students first)"
    not_guardian = "this e-mail belongs to a school_admin account, not a guardian"
    other_name = "the same e-mail is in row 2 with another name (Аманова Гүлнар)"
    assert errs == [
        (7, "email", "", "e-mail is required (guardians log in with it)"),
        (8, "email", "no-at-sign", "not a valid e-mail address"),
        (4, "child_iins", unknown, no_child),
        (5, "email", "admin1@qadam.kz", not_guardian),
        (6, "email", "gulnar@mail.kz", other_name),
    ]
    assert rep["not_stored_columns"] == ["phone"]
    assert rep["would_create"] == {"guardians": 1, "links": 4}
    assert rep["invites_needed"] == ["gulnar@mail.kz"]
    assert snapshot(database_url) == before
    assert post(c, w, "guardians", data, dry_run=False).status_code == 422
    assert snapshot(database_url) == before

    good = [lines[0], lines[1], lines[2], lines[8]]
    r = post(c, w, "guardians", csv_bytes(good), dry_run=False)
    assert r.status_code == 200, r.text
    with psycopg.connect(database_url) as conn:
        links = conn.execute(
            "SELECT u.email, u.role, p.external_id FROM guardian_students g"
            " JOIN users u ON u.id = g.guardian_id JOIN people p ON p.id = g.person_id"
            " WHERE p.external_id IS NOT NULL ORDER BY 1, 3"
        ).fetchall()
    assert links == sorted(
        [("gulnar@mail.kz", "guardian", x) for x in (IIN_A, IIN_B, IIN_C)]
        + [("mum@qadam.kz", "guardian", IIN_B)]
    )
    # no usable password until invited
    r = c.post("/api/v1/auth/token", data={"username": "gulnar@mail.kz", "password": ""})
    assert r.status_code in (401, 422)
    marker = {"username": "gulnar@mail.kz", "password": "!import:invite-pending"}
    assert c.post("/api/v1/auth/token", data=marker).status_code == 401
    after = snapshot(database_url)
    r = post(c, w, "guardians", csv_bytes(good), dry_run=False)
    assert r.json()["would_create"] == {"guardians": 0, "links": 0}
    assert without_audit(snapshot(database_url)) == without_audit(after)


# ---- scope and limits ---------------------------------------------------------------------
def test_scope_other_school_is_404(world: tuple[TestClient, World], database_url: str) -> None:
    c, w = world
    r = post(c, w, "students", csv_bytes(STUDENTS), dry_run=False, url="/api/v1/schools/s3/import")
    assert r.status_code == 404
    r = post(c, w, "students", csv_bytes(STUDENTS), dry_run=True, role="canteen_operator")
    assert r.status_code == 403
    no_meals = [line.rsplit("|", 1)[0] for line in STUDENTS]  # s3 has no meal categories
    r = post(c, w, "students", csv_bytes(no_meals), dry_run=False, role="platform_admin",
             url="/api/v1/schools/s3/import")  # fmt: skip
    assert r.status_code == 200, r.text


def test_limits(world: tuple[TestClient, World], database_url: str) -> None:
    c, w = world
    big = b"x" * (5 * 1024 * 1024 + 1)
    r = post(c, w, "students", big, dry_run=True)
    assert r.status_code == 413 and "larger than 5 MB" in r.json()["detail"][0]["msg"]
    rows = ["ФИО;ИИН"] + [f"P{i};{i}" for i in range(10_001)]
    r = post(c, w, "students", ("\n".join(rows)).encode(), dry_run=True)
    assert r.status_code == 413
    assert r.json()["detail"][0]["msg"] == "more than 10000 data rows: split the file"


def test_ten_thousand_rows(world: tuple[TestClient, World], database_url: str) -> None:
    c, w = world
    lines = ["ФИО;Класс;ИИН;Номер карты;Категория питания"]
    for i in range(10_000):  # unique IINs: the birth date and the serial vary with i
        pupil = iin.make(date(2010 + i % 5, i % 12 + 1, i % 28 + 1), i // 60 * 11)
        meal = "free" if i % 2 else ""
        lines.append(f"Pupil {i};{i % 40 + 1}A;{pupil};{0x10000000 + i:08X};{meal}")
    data = ("\n".join(lines)).encode()
    t0 = time.perf_counter()
    r = post(c, w, "students", data, dry_run=True)
    t_dry = time.perf_counter() - t0
    assert r.status_code == 200, r.text[:500]
    assert r.json()["errors"] == [] and r.json()["valid"] == 10_000
    t0 = time.perf_counter()
    r = post(c, w, "students", data, dry_run=False)
    t_real = time.perf_counter() - t0
    assert r.status_code == 200, r.text[:500]
    # 40 class names, "5A" exists already
    assert r.json()["would_create"] == {"people": 10_000, "classes": 39, "cards": 10_000,
                                        "eligibility": 5_000}  # fmt: skip
    t0 = time.perf_counter()
    r = post(c, w, "students", data, dry_run=False)
    t_again = time.perf_counter() - t0
    assert r.json()["would_create"]["people"] == 0 and r.json()["would_update"] == {"people": 0}
    print(f"10k rows: dry run {t_dry:.2f}s, import {t_real:.2f}s, re-import {t_again:.2f}s")
    assert len(whitelist_keys(database_url)) == 10_002
    # The times are printed, not asserted: a wall-clock bound failed under the suite's load
    # (20.8 s; 13-16 s alone on this machine, the same before and after issue #13).
