"""The console's import wizard (/import, D28-B): the dry run's errors (translated) and summary
before anything changes, "Apply" imports exactly the checked file once, a changed file or
changed data is checked again, bad files get a clear message and change nothing, and another
school's upload is "not found". The browser test (390 px and desktop) writes the screenshots
import-upload, import-errors and import-done."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, expect
from test_api_domain import snapshot
from test_console_browser import DESKTOP, PHONE, Tab, browser  # noqa: F401 (the fixture)

from cloud.console import import_reasons
from cloud.imports import iin

IIN_A = iin.make(date(2010, 3, 14), 1)
IIN_B = iin.make(date(2011, 9, 1), 20, female=True)
IIN_C = iin.make(date(2010, 12, 31), 300)
GOOD = [
    "ФИО;Класс;ИИН;Номер карты",
    f"Аманов Арман;7А;{IIN_A};04A1B2C3",
    f"Беккер Бота;7А;{IIN_B};",
]
BAD = [
    "ФИО;Класс;ИИН;Номер карты;Категория питания",
    f";7А;{IIN_A};;",  # 2: no name
    f"Bad Iin;7А;{IIN_A[:11]}{(int(IIN_A[11]) + 1) % 10};;",  # 3: check digit
    f"Hex;7А;{IIN_B};XYZ123;",  # 4: card
    f"Meal;7А;{IIN_C};;по желанию",  # 5: meal
]


def csv(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("utf-8-sig")


def check(c: TestClient, data: bytes, name: str = "pupils.csv", lang: str = "en",
          **form: str) -> Any:  # fmt: skip
    return c.post("/import/check", data={"kind": "students", "create_classes": "1", **form},
                  files={"file": (name, data)},
                  headers={**SAME_ORIGIN, "Accept-Language": lang})  # fmt: skip


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m is not None, f"no {name} in the page"
    return m.group(1)


def apply(c: TestClient, html: str, **override: str) -> Any:
    form = {n: hidden(html, n) for n in ("upload_id", "sha256", "expect", "create_classes")}
    form.update(override)
    return c.post("/import/apply", data=form, headers=SAME_ORIGIN, follow_redirects=False)


def people(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT full_name, external_id FROM people WHERE school_id = 's1'"
            " AND external_id IS NOT NULL ORDER BY full_name"
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def uploads(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM import_uploads").fetchone()
    assert row is not None
    return int(row[0])


def test_errors_are_shown_translated_and_nothing_changes(
    client: TestClient, world: World, database_url: str
) -> None:
    assert sign_in(client, "admin1@qadam.kz", PASSWORD, "ru").status_code == 303
    before = snapshot(database_url)
    r = check(client, csv(BAD), lang="ru")
    assert r.status_code == 200
    html = r.text
    assert "4 ошибки" in html or "4 ошибок" in html, html
    # the rows and what is wrong, in Russian (the API's English reasons are not shown)
    assert "Требуется ФИО." in html
    assert "Неверная контрольная цифра ИИН (опечатка?)." in html
    assert "Номер карты XYZ123" in html
    assert "Неизвестная категория питания" in html
    assert "full name is required" not in html
    assert 'name="upload_id"' not in html  # no Apply for a file with errors
    assert snapshot(database_url) == before
    assert uploads(database_url) == 0


def test_check_then_apply_exactly_once(client: TestClient, world: World, database_url: str) -> None:
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    before = snapshot(database_url)
    r = check(client, csv(GOOD))
    assert r.status_code == 200
    assert re.search(r'id="sum-new">2<', r.text) and re.search(r'id="sum-updated">0<', r.text)
    assert re.search(r'id="sum-classes">1<', r.text) and re.search(r'id="sum-cards">1<', r.text)
    assert snapshot(database_url) == before  # the check changed nothing
    assert hidden(r.text, "sha256") == hashlib.sha256(csv(GOOD)).hexdigest()

    done = apply(client, r.text)
    assert done.status_code == 303
    where = done.headers["location"]
    assert re.fullmatch(r"/import/\d+", where)
    assert people(database_url) == [("Аманов Арман", IIN_A), ("Беккер Бота", IIN_B)]
    page = client.get(where)
    assert page.status_code == 200
    assert re.search(r'id="done-new">2<', page.text)
    assert 'href="/people"' in page.text and 'href="/guardians"' in page.text

    # a second click on Apply imports nothing more: it shows the first result
    again = apply(client, r.text)
    assert again.status_code == 303 and again.headers["location"] == where
    assert len(people(database_url)) == 2
    # the same file checked again: two unchanged rows
    r2 = check(client, csv(GOOD))
    assert re.search(r'id="sum-unchanged">2<', r2.text) and re.search(r'id="sum-new">0<', r2.text)


def test_a_changed_file_or_changed_data_is_checked_again(
    client: TestClient, world: World, database_url: str
) -> None:
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    r = check(client, csv(GOOD))
    before = snapshot(database_url)
    # not the file that was checked (the hash the page was given does not match)
    bad = apply(client, r.text, sha256="0" * 64)
    assert bad.status_code == 200
    assert "This is not the file that was checked" in bad.text
    assert snapshot(database_url) == before
    # the school's data changed after the check: one of the pupils now exists
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO people (school_id, kind, full_name, external_id)"
            " VALUES ('s1', 'student', 'Аманов А.', %s)",
            (IIN_A,),
        )
    changed = apply(client, r.text)
    assert changed.status_code == 200
    assert "changed since the check" in changed.text
    assert people(database_url) == [("Аманов А.", IIN_A)]  # nothing was imported
    assert re.search(r'id="sum-updated">1<', changed.text)  # the new check: one update
    ok = apply(client, changed.text)  # the new check's Apply goes through
    assert ok.status_code == 303
    assert people(database_url) == [("Аманов Арман", IIN_A), ("Беккер Бота", IIN_B)]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "photo.png",
            b"\x89PNG\r\n\x1a\n\x00\x00",
            "Choose a CSV or XLSX file (photo.png is neither).",
        ),
        ("photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", "This is not a CSV or XLSX file"),
        ("empty.csv", b"", "The file is empty."),
        ("old.xlsx", b"\xd0\xcf\x11\xe0rest", "Old Excel .xls files cannot be read"),
        ("broken.xlsx", b"PK\x03\x04broken", "This is not a readable .xlsx file."),
        ("big.csv", b"a" * (5 * 1024 * 1024 + 1), "The file is larger than 5 MB."),
    ],
)
def test_bad_files_get_a_clear_message(
    client: TestClient, world: World, database_url: str, name: str, data: bytes, message: str
) -> None:
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    before = snapshot(database_url)
    r = check(client, data, name=name)
    assert r.status_code == 200
    assert 'role="alert"' in r.text and message in r.text, r.text[-3000:]
    assert snapshot(database_url) == before
    assert uploads(database_url) == 0


def test_wrong_columns_are_named_in_the_language_of_the_page(
    client: TestClient, world: World, database_url: str
) -> None:
    assert sign_in(client, "admin1@qadam.kz", PASSWORD, "kk").status_code == 303
    r = check(client, csv(["Класс;Номер карты", "5A;04A1B2C3"]), lang="kk")
    assert r.status_code == 200
    assert "Баған жоқ: Толық аты-жөні." in r.text, r.text[-3000:]
    assert uploads(database_url) == 0


def test_xlsx_pupils_then_their_guardians(
    client: TestClient, world: World, database_url: str
) -> None:
    import io

    from openpyxl import Workbook

    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    for line in GOOD:
        ws.append(line.split(";"))
    buf = io.BytesIO()
    wb.save(buf)
    r = check(client, buf.getvalue(), name="pupils.xlsx")
    assert re.search(r'id="sum-new">2<', r.text), r.text[-2000:]
    assert apply(client, r.text).status_code == 303
    guardians = csv(["ФИО;Email;ИИН ребенка", f"Аманова Айгүл;aigul@mail.kz;{IIN_A} {IIN_B}"])
    g = check(client, guardians, name="parents.csv", kind="guardians")
    assert re.search(r'id="sum-new">1<', g.text) and re.search(r'id="sum-links">2<', g.text)
    done = apply(client, g.text)
    assert done.status_code == 303
    page = client.get(done.headers["location"])
    assert re.search(r'id="done-links">2<', page.text)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM guardian_students gs JOIN users u ON u.id = gs.guardian_id"
            " WHERE u.email = 'aigul@mail.kz'"
        ).fetchone()
    assert row is not None and row[0] == 2


def test_scope_and_roles(client: TestClient, world: World, database_url: str) -> None:
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    r = check(client, csv(GOOD))
    # another school's admin: that upload and its result are "not found"
    client.cookies.clear()
    assert sign_in(client, "admin3@qadam.kz", PASSWORD).status_code == 303
    before = snapshot(database_url)
    assert apply(client, r.text).status_code == 404
    assert snapshot(database_url) == before
    # nor may they check a file into school s1
    other = check(client, csv(GOOD), school="s1")
    assert "Choose a school." in other.text and uploads(database_url) == 1
    # a canteen operator may not import (as in the API)
    client.cookies.clear()
    assert sign_in(client, "cook1@qadam.kz", PASSWORD).status_code == 303
    assert client.get("/import").status_code == 403
    assert check(client, csv(GOOD)).status_code == 403
    # the platform operator picks the school
    client.cookies.clear()
    assert sign_in(client, "root@qadam.kz", PASSWORD).status_code == 303
    page = client.get("/import")
    assert 'id="school"' in page.text
    r3 = check(client, csv(GOOD), school="s3")
    assert apply(client, r3.text).status_code == 303
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM people WHERE school_id = 's3'"
                           " AND external_id = %s", (IIN_A,)).fetchone()  # fmt: skip
    assert row is not None and row[0] == 1


def test_every_reason_of_the_api_tests_is_translated() -> None:
    """The English wordings the import produces (tests/cloud/test_import.py asserts them) all
    have a message here, and each message is translated in kk and ru."""
    reasons = [
        "full name is required",
        "IIN check digit is wrong (typo?)",
        "card UID 'XYZ123' is not 4, 7 or 10 bytes of hex (8, 14 or 20 hex digits)",
        "unknown meal category 'по желанию': use free, reduced or paid (бесплатное, льготное,"
        " платное; тегін, жеңілдетілген, ақылы)",
        "IIN is required (it is the key that makes a re-import update, not duplicate)",
        "class name is longer than 50 characters",
        "the same IIN is also in row 4",
        "card 11223344 already belongs to another person (id 7)",
        "card 04A1B2C3 is also in row 6",
        "IIN must be exactly 12 digits (a leading zero lost in Excel?)",
        "missing column full_name: name it one of ФИО, Full name",
        "no student with IIN 100314500012 at this school (import students first)",
        "this e-mail belongs to a school_admin account, not a guardian",
        "the file is empty",
        "more than 10000 data rows: split the file",
    ]
    for reason in reasons:
        assert import_reasons.known(reason), reason
        for lang in ("kk", "ru"):
            assert import_reasons.translate(lang, reason) != import_reasons.translate("en", reason)


# ---- in Chromium -------------------------------------------------------------------------------
@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_import_in_the_browser(
    browser: Browser,  # noqa: F811
    server: str,
    world: World,
    database_url: str,
    tmp_path: Path,
    viewport: dict[str, int],
    width: str,
) -> None:
    tab = Tab(browser, server, viewport, "en-US")
    p = tab.sign_in("admin1@qadam.kz")
    p = tab.go("/import")
    expect(p.locator("h1")).to_have_text("Import pupils, staff or guardians")
    expect(p.get_by_label("The file holds")).to_have_value("students")
    bad = tmp_path / "pupils-with-errors.csv"
    bad.write_bytes(csv(BAD))
    p.get_by_label("File (CSV or XLSX)").set_input_files(str(bad))
    tab.shot(f"import-upload-{width}")
    p.get_by_role("button", name="Check the file").click()
    expect(p.locator("#check-errors")).to_contain_text("4 errors")
    expect(p.locator("table.import-errors tbody tr")).to_have_count(4)
    expect(p.locator("table.import-errors")).to_contain_text("The IIN's check digit is wrong")
    expect(p.locator("#import-progress")).to_be_hidden()  # the answer replaced the progress line
    p.locator("#check-errors").scroll_into_view_if_needed()
    tab.shot(f"import-errors-{width}")
    assert people(database_url) == []

    good = tmp_path / "pupils.csv"
    good.write_bytes(csv(GOOD))
    p.get_by_label("File (CSV or XLSX)").set_input_files(str(good))
    p.get_by_role("button", name="Check the file").click()
    expect(p.locator("#sum-new")).to_have_text("2")
    p.get_by_role("button", name="Apply").press("Enter")  # the keyboard, not a click
    expect(p).to_have_url(re.compile(r".*/import/\d+$"))
    expect(p.locator("#done-new")).to_have_text("2")
    expect(p.get_by_role("link", name="See the people")).to_be_visible()
    tab.shot(f"import-done-{width}")
    assert len(people(database_url)) == 2
    tab.clean()
