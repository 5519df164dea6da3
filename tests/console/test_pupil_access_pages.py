"""A school's ways to give pupils the app, in-process (issue #16 "For a student", D29-E): a
password set from the person page (the pupil's sessions end, an unused code stops working,
audited without the password); a sheet of new code slips for a class; the pupils import's
``student_account`` column (dry run shows it, apply makes the accounts, bad values are row
errors and change nothing); the console's Learning page (the API's rules and list, reorder,
read-only for a district); the app's sign-in hint and a forgot-password that refuses pupils'
logins without looking them up or mailing."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import SAME_ORIGIN, sign_in
from email_smtp import mail_settings
from fastapi.testclient import TestClient
from test_import_wizard import apply, check, csv

from cloud.api.app import create_app
from cloud.imports import iin
from cloud.settings import Settings

NEW = "Amirdin jana kupiyasozi"


def _admin(client: TestClient, who: str = "admin1@qadam.kz") -> None:
    client.cookies.clear()
    assert sign_in(client, who, PASSWORD).status_code == 303


def _post(client: TestClient, path: str, data: dict[str, Any]) -> Any:
    return client.post(path, data=data, headers=SAME_ORIGIN, follow_redirects=False)


def _app_login(client: TestClient, login: str, password: str) -> int:
    client.cookies.clear()
    r = _post(client, "/app/en/login", {"email": login, "password": password})
    return int(r.status_code)


def _one(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# ---- a password set by the school ------------------------------------------------------------
def test_school_sets_a_pupils_password(client: TestClient, world: World, database_url: str) -> None:
    amir = world.ids["amir"]
    _admin(client)
    page = client.get(f"/people/{amir}").text
    assert f'action="/people/{amir}/student-password"' in page and "No app account yet" in page
    slip = _post(client, f"/people/{amir}/student-code", {})  # a code the pupil never uses
    code = re.search(r'id="slip-code">([^<]+)<', slip.text)
    assert code is not None
    r = _post(client, f"/people/{amir}/student-password", {"password": NEW, "repeat": NEW})
    assert r.status_code == 303 and r.headers["location"] == f"/people/{amir}?done=student_password"
    page = client.get(r.headers["location"]).text
    assert "password is set" in page and f"{amir}@s1.pupil" in page and "has a password" in page
    assert _app_login(client, f"{amir}@s1.pupil", NEW) == 303
    # the slip printed before no longer resets the password
    r = _post(client, "/app/en/code", {"code": code.group(1), "password": "x" * 12,
                                       "repeat": "x" * 12})  # fmt: skip
    assert r.status_code == 422 and "replaced by a newer one" in r.text
    audit = _one(database_url, "SELECT after::text FROM audit_log WHERE entity = 'users'"
                 " AND action = 'update' ORDER BY id DESC LIMIT 1")  # fmt: skip
    assert "set by the school" in audit and NEW not in audit and "argon2" not in audit


def test_setting_a_password_ends_the_pupils_sessions(
    client: TestClient, world: World, database_url: str
) -> None:
    assert _app_login(client, "alice@s1.pupil", PASSWORD) == 303
    pupil_cookies = dict(client.cookies)
    assert client.get("/app/en/").status_code == 200
    _admin(client)
    r = _post(client, f"/people/{world.ids['alice']}/student-password",
              {"password": NEW, "repeat": NEW})  # fmt: skip
    assert r.status_code == 303
    client.cookies.clear()
    client.cookies.update(pupil_cookies)
    assert client.get("/app/en/", follow_redirects=False).status_code in (302, 303, 401)
    assert _one(database_url, "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id"
                " WHERE u.email = 'alice@s1.pupil' AND s.revoked_at IS NULL") == 0  # fmt: skip
    assert _app_login(client, "alice@s1.pupil", PASSWORD) == 200  # the old one is refused
    assert _app_login(client, "alice@s1.pupil", NEW) == 303


@pytest.mark.parametrize(
    ("password", "repeat", "says"),
    [("short", "short", "at least 10 characters"), (NEW, NEW + "!", "differ")],
)
def test_a_bad_password_changes_nothing(
    client: TestClient, world: World, database_url: str, password: str, repeat: str, says: str
) -> None:
    before = _one(database_url, "SELECT count(*) FROM users")
    _admin(client)
    r = _post(client, f"/people/{world.ids['amir']}/student-password",
              {"password": password, "repeat": repeat})  # fmt: skip
    assert r.status_code == 422 and says in r.text and 'role="alert"' in r.text
    assert _one(database_url, "SELECT count(*) FROM users") == before


@pytest.mark.parametrize(("who", "person", "status"), [
    ("admin1@qadam.kz", "cara", 404),  # another school's pupil
    ("admin1@qadam.kz", "bob", 404),  # staff of another school
    ("admin3@qadam.kz", "amir", 404),  # s3's admin, s1's pupil
    ("cook1@qadam.kz", "amir", 403),  # a canteen operator gives no passwords
])  # fmt: skip
def test_password_outside_scope_or_role(
    client: TestClient, world: World, database_url: str, who: str, person: str, status: int
) -> None:
    before = _one(database_url, "SELECT count(*) FROM users")
    _admin(client, who)
    r = _post(client, f"/people/{world.ids[person]}/student-password",
              {"password": NEW, "repeat": NEW})  # fmt: skip
    assert r.status_code == status
    assert _one(database_url, "SELECT count(*) FROM users") == before


# ---- a class's slips -------------------------------------------------------------------------
def _slips(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<code class="login">([^<]+)</code>.*?<dd class="code">([^<]+)</dd>', html,
                      re.S)  # fmt: skip


def test_class_slips_new_codes_for_pupils_without_a_password(
    client: TestClient, world: World, database_url: str
) -> None:
    amir, klass = world.ids["amir"], world.ids["class_id"]
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE people SET class_id = %s WHERE id = %s", (klass, amir))
    _admin(client)
    page = client.get(f"/student-slips?class={klass}")
    assert page.status_code == 200 and "Amir Amirov" in page.text and "Alice Aliyeva" in page.text
    assert "without a password yet: 1." in page.text  # Alice has one
    r = _post(client, "/student-slips", {"class_id": str(klass), "only_new": "1"})
    assert r.status_code == 200, r.text
    slips = _slips(r.text)
    assert [login for login, _ in slips] == [f"{amir}@s1.pupil"]  # Amir's account made now
    r = _post(client, "/student-slips", {"class_id": str(klass)})  # everyone: a new code each
    again = _slips(r.text)
    assert sorted(login for login, _ in again) == sorted([f"{amir}@s1.pupil", "alice@s1.pupil"])
    assert _one(database_url, "SELECT count(*) FROM student_codes WHERE used_at IS NULL"
                " AND revoked_at IS NULL") == 2  # Amir's first code revoked  # fmt: skip
    client.cookies.clear()
    code = dict(again)[f"{amir}@s1.pupil"]
    r = _post(client, "/app/en/code", {"code": code, "password": NEW, "repeat": NEW})
    assert r.status_code == 303
    stale = _post(client, "/app/en/code", {"code": slips[0][1], "password": NEW, "repeat": NEW})
    assert stale.status_code == 422 and "replaced by a newer one" in stale.text


def test_class_slips_school_picked_over_the_old_class(client: TestClient, world: World) -> None:
    """A platform admin picks another school while a class of the first is chosen: the page
    shows the new school's classes, not the old class's pupils."""
    _admin(client, "root@qadam.kz")
    klass = world.ids["class_id"]
    page = client.get(f"/student-slips?class={klass}").text
    assert 'id="class-pupils"' in page and "Alice Aliyeva" in page
    page = client.get(f"/student-slips?school=s3&class={klass}").text
    assert 'id="class-pupils"' not in page and "Alice Aliyeva" not in page
    assert '<option value="s3" selected>' in page


@pytest.mark.parametrize("who", ["admin1@qadam.kz", "cook1@qadam.kz"])
def test_class_slips_of_another_school_or_role(
    client: TestClient, world: World, database_url: str, who: str
) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("INSERT INTO classes (school_id, name) VALUES ('s3', '9B')"
                           " RETURNING id").fetchone()  # fmt: skip
        assert row is not None
        conn.execute("UPDATE people SET class_id = %s WHERE id = %s", (row[0], world.ids["cara"]))
    _admin(client, who)
    r = _post(client, "/student-slips", {"class_id": str(row[0])})
    assert r.status_code == (404 if who.startswith("admin") else 403)
    assert client.get(f"/student-slips?class={row[0]}").status_code == r.status_code
    assert _one(database_url, "SELECT count(*) FROM student_codes") == 0
    assert _one(database_url, "SELECT count(*) FROM users WHERE role = 'student'") == 1


# ---- the import's column ---------------------------------------------------------------------
IIN_D = iin.make(date(2012, 5, 6), 41)
IIN_E = iin.make(date(2012, 7, 8), 42, female=True)


def test_import_makes_pupils_accounts(client: TestClient, world: World, database_url: str) -> None:
    _admin(client)
    data = csv(["ФИО;Класс;ИИН;Аккаунт ученика",
                f"Dana Dosova;5A;{IIN_D};да", f"Erlan Ermek;5A;{IIN_E};no"])  # fmt: skip
    r = check(client, data)
    assert r.status_code == 200 and 'id="sum-accounts">1<' in r.text
    assert _one(database_url, "SELECT count(*) FROM users WHERE role = 'student'") == 1
    done = apply(client, r.text)
    assert done.status_code == 303
    page = client.get(done.headers["location"]).text
    assert 'id="done-accounts">1<' in page and 'href="/student-slips"' in page
    dana = _one(database_url, "SELECT id FROM people WHERE external_id = %s", (IIN_D,))
    login = _one(database_url, "SELECT u.email FROM student_accounts a JOIN users u"
                 " ON u.id = a.user_id WHERE a.person_id = %s", (dana,))  # fmt: skip
    assert login == f"{dana}@s1.pupil"
    assert _one(database_url, "SELECT count(*) FROM users WHERE role = 'student'") == 2
    audit = _one(database_url, "SELECT after::text FROM audit_log WHERE entity = 'imports'"
                 " ORDER BY id DESC LIMIT 1")  # fmt: skip
    assert '"student_accounts"' in audit
    # the same file again: Dana has her account, nothing new
    again = check(client, data)
    assert 'id="sum-accounts">0<' in again.text
    # Erlan, imported without one, gets his now; Dana's stays (an import never removes one)
    data = csv(["ФИО;Класс;ИИН;Аккаунт ученика",
                f"Dana Dosova;5A;{IIN_D};нет", f"Erlan Ermek;5A;{IIN_E};иә"])  # fmt: skip
    r = check(client, data)
    assert 'id="sum-accounts">1<' in r.text and 'id="sum-updated">0<' in r.text
    assert apply(client, r.text).status_code == 303
    assert _one(database_url, "SELECT count(*) FROM users WHERE role = 'student'") == 3


def test_import_bad_account_value_is_a_row_error(
    client: TestClient, world: World, database_url: str
) -> None:
    _admin(client)
    data = csv(["ФИО;ИИН;Student account", f"Dana Dosova;{IIN_D};maybe"])
    before = _one(database_url, "SELECT count(*) FROM people")
    r = check(client, data, lang="ru")
    assert "напишите да или нет" in r.text and "maybe" in r.text
    assert 'id="apply-form"' not in r.text
    token = client.post("/api/v1/auth/token", data={"username": "admin1@qadam.kz",
                        "password": PASSWORD}).json()["access_token"]  # fmt: skip
    api = client.post("/api/v1/schools/s1/import", params={"kind": "students", "dry_run": "false"},
                      files={"file": ("p.csv", data)},
                      headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert api.status_code == 422  # the API, same rule: the row's error, nothing applied
    assert "student_account 'maybe' is neither yes nor no" in api.text
    assert _one(database_url, "SELECT count(*) FROM people") == before
    assert _one(database_url, "SELECT count(*) FROM users WHERE role = 'student'") == 1


# ---- the Learning page -----------------------------------------------------------------------
def _form(school: str, rows: list[tuple[str, str]], action: str = "save") -> dict[str, Any]:
    return {"school": school, "title": [t for t, _ in rows], "url": [u for _, u in rows],
            "action": action}  # fmt: skip


LIST = [("Bilimland", "https://bilimland.kz/"), ("Daryn", "https://daryn.online/"),
        ("OpiqKZ", "https://opiq.kz/")]  # fmt: skip


def test_learning_page_edits_the_apis_list(client: TestClient, world: World) -> None:
    _admin(client)
    assert 'href="/learning"' in client.get("/today").text  # in the menu
    r = _post(client, "/learning", _form("s1", [*LIST, ("", "")]))
    assert r.status_code == 303 and r.headers["location"] == "/learning?school=s1&done=1"
    page = client.get(r.headers["location"]).text
    assert 'id="learning-saved"' in page and page.index("Bilimland") < page.index("OpiqKZ")
    r = _post(client, "/learning", _form("s1", LIST, "down:0"))  # move and save in one step
    assert r.status_code == 303
    token = client.post("/api/v1/auth/token", data={"username": "alice@s1.pupil",
                        "password": PASSWORD}).json()["access_token"]  # fmt: skip
    got = client.get("/api/v1/schools/s1/learning", headers={"Authorization": f"Bearer {token}"})
    assert [x["title"] for x in got.json()] == ["Daryn", "Bilimland", "OpiqKZ"]
    r = _post(client, "/learning", _form("s1", LIST, "remove:2"))
    page = client.get("/learning").text
    assert "OpiqKZ" not in page and "Bilimland" in page


@pytest.mark.parametrize(("rows", "says"), [
    ([("Plain", "http://example.org/")], "Resource 1: the link must be a full https://"),
    ([("Ok", "https://a.kz/"), ("", "https://b.kz/")], "Resource 2: give both"),
    ([("T" * 201, "https://a.kz/")], "Resource 1: the title is required"),
    ([(f"R{i}", f"https://r{i}.kz/") for i in range(21)], "At most 20 resources"),
])  # fmt: skip
def test_learning_page_refuses_bad_lists(
    client: TestClient, world: World, database_url: str, rows: list[tuple[str, str]], says: str
) -> None:
    _admin(client)
    assert _post(client, "/learning", _form("s1", LIST)).status_code == 303
    audits = _one(database_url, "SELECT count(*) FROM audit_log")
    r = _post(client, "/learning", _form("s1", rows))
    assert r.status_code == 200 and says in r.text and 'id="learning-errors"' in r.text
    assert _one(database_url, "SELECT count(*) FROM learning_resources") == 3
    assert _one(database_url, "SELECT count(*) FROM audit_log") == audits


def test_learning_page_roles_and_schools(
    client: TestClient, world: World, database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO learning_resources (school_id, position, title, url)"
                     " VALUES ('s1', 0, 'Bilimland', 'https://bilimland.kz/')")  # fmt: skip
    _admin(client, "d1@qadam.kz")  # a district reads (as the API lets it), does not edit
    page = client.get("/learning?school=s1")
    assert (
        page.status_code == 200
        and "Bilimland" in page.text
        and 'id="learning-form"' not in page.text
    )
    assert _post(client, "/learning", _form("s1", LIST)).status_code == 403
    _admin(client)
    assert client.get("/learning?school=s3").status_code == 404
    assert _post(client, "/learning", _form("s3", LIST)).status_code == 404
    _admin(client, "cook1@qadam.kz")
    assert client.get("/learning").status_code == 403
    assert _one(database_url, "SELECT count(*) FROM learning_resources") == 1


# ---- sign-in and forgot password -------------------------------------------------------------
def test_sign_in_page_names_the_pupils_login(client: TestClient) -> None:
    for lang, label in (("en", "E-mail or pupil login"), ("ru", "Эл. почта или логин ученика"),
                        ("kk", "Электрондық пошта немесе оқушы логині")):  # fmt: skip
        page = client.get(f"/app/{lang}/login").text
        assert label in page and 'id="login-hint"' in page and "1234@school-1.pupil" in page


def test_a_refused_sign_in_names_the_login_not_only_an_e_mail(client: TestClient) -> None:
    for lang, text in (("en", "Wrong login or password."), ("ru", "Неверный логин или пароль."),
                       ("kk", "Логин немесе құпиясөз қате.")):  # fmt: skip
        client.cookies.clear()
        r = _post(client, f"/app/{lang}/login", {"email": "alice@s1.pupil", "password": "nope"})
        assert r.status_code == 200 and text in r.text, r.text[-500:]


def test_forgot_refuses_pupils_logins_alike(database_url: str, world: World) -> None:
    """An existing pupil's login, one that does not exist and one typed in capitals get the same
    page on both forgot pages; nothing is looked up or mailed; an address still gets its link."""
    settings = Settings(database_url=database_url, auth_required=True, **mail_settings(9))
    with TestClient(create_app(settings), base_url="https://testserver",
                    headers={"Accept-Language": "en"}) as c:  # fmt: skip
        for path in ("/forgot", "/app/en/forgot"):
            pages = set()
            for login in ("alice@s1.pupil", "999999@s1.pupil", " Alice@S1.PUPIL "):
                r = c.post(path, data={"email": login}, headers=SAME_ORIGIN)
                assert r.status_code == 200 and 'id="forgot-pupil"' in r.text
                assert "Ask your school for a new sign-in code" in r.text
                assert 'id="forgot-sent"' not in r.text
                pages.add(re.sub(r'value="[^"]*"', "", r.text))
            assert len(pages) == 1, path
        staff = c.post("/forgot", data={"email": "admin1@qadam.kz"}, headers=SAME_ORIGIN)
        assert 'id="forgot-sent"' in staff.text and 'id="forgot-pupil"' not in staff.text
    assert _one(database_url, "SELECT count(*) FROM email_messages WHERE to_addr LIKE"
                " '%%.pupil'") == 0  # fmt: skip
    assert _one(database_url, "SELECT count(*) FROM email_messages") == 1  # the staff's only
