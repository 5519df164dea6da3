"""The student's account and app, in-process (issue #16 "For a student", D28-O): a school admin
prints a pupil a sign-in code slip from the person page; the pupil uses the code once with a new
password and is signed in; then the login and password work and the code does not; the app's
pages show the pupil only themself (no other child, no guardian-only page), and the Learning tab
lists their own school's resources."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from appmenu_helpers import ratings, seed_menu
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient

NEW_PASSWORD = "my own secret 42"


def _print_slip(client: TestClient, person: int) -> Any:
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    r = client.post(f"/people/{person}/student-code", headers=SAME_ORIGIN)
    client.cookies.clear()
    return r


def _slip(client: TestClient, person: int) -> tuple[str, str]:
    r = _print_slip(client, person)
    assert r.status_code == 200, r.text
    login = re.search(r'id="slip-login">([^<]+)<', r.text)
    code = re.search(r'id="slip-code">([^<]+)<', r.text)
    assert login and code, r.text
    return login.group(1), code.group(1)


def _use_code(client: TestClient, code: str, password: str = NEW_PASSWORD) -> Any:
    form = {"code": code, "password": password, "repeat": password}
    return client.post("/app/en/code", data=form, headers=SAME_ORIGIN, follow_redirects=False)


def _login(client: TestClient, login: str, password: str) -> Any:
    return client.post("/app/en/login", data={"email": login, "password": password},
                       headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip


def test_code_once_then_password(client: TestClient, world: World, database_url: str) -> None:
    amir = world.ids["amir"]
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    person_page = client.get(f"/people/{amir}").text
    assert f'action="/people/{amir}/student-code"' in person_page
    client.cookies.clear()
    login, code = _slip(client, amir)
    assert login == f"{amir}@s1.pupil" and re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}", code)
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM student_codes WHERE code_hash::text LIKE"
                              " %s", ("%" + code.replace("-", "") + "%",)).fetchone()  # fmt: skip
    assert stored == (0,)  # only a hash is kept
    # a short password or two that differ: refused, the code still works afterwards
    assert _use_code(client, code, "short").status_code == 422
    r = client.post("/app/en/code", data={"code": code, "password": NEW_PASSWORD,
                    "repeat": NEW_PASSWORD + "x"}, headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 422 and "differ" in r.text
    # typed in lower case, without the dash, with O for 0: still the code
    typed = code.replace("-", "").lower().replace("0", "o")
    r = _use_code(client, typed)
    assert r.status_code == 303 and r.headers["location"] == "/app/en/"
    feed = client.get("/app/en/")
    assert feed.status_code == 200 and "Amir Amirov" in feed.text
    assert "Alice" not in feed.text
    client.cookies.clear()
    again = _use_code(client, code)
    assert again.status_code == 422 and "already been used" in again.text
    assert _login(client, login, NEW_PASSWORD).status_code == 303
    assert "Amir Amirov" in client.get("/app/en/").text


def test_new_slip_revokes_the_old_code(client: TestClient, world: World) -> None:
    _, first = _slip(client, world.ids["amir"])
    _, second = _slip(client, world.ids["amir"])
    r = _use_code(client, first)
    assert r.status_code == 422 and "replaced by a newer one" in r.text
    assert _use_code(client, second).status_code == 303


@pytest.mark.parametrize("who", ["cara", "bob", "missing"])
def test_slip_for_another_school_or_staff_is_not_found(
    client: TestClient, world: World, database_url: str, who: str
) -> None:
    person = world.ids.get(who, 10**12)
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM users").fetchone()
    assert _print_slip(client, person).status_code == 404
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == before
        assert conn.execute("SELECT count(*) FROM student_codes").fetchone() == (0,)


def test_a_wrong_code_is_refused_and_counted(client: TestClient, database_url: str) -> None:
    for code in ("ZZZZ-ZZZZ", "short", "UUUU-UUUU"):
        r = _use_code(client, code)
        assert r.status_code == 422 and "not valid" in r.text
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)


def test_pages_show_only_themself(client: TestClient, world: World, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO learning_resources (school_id, position, title, url) VALUES"
                     " ('s1', 0, 'Bilimland', 'https://bilimland.kz/'),"
                     " ('s2', 0, 'Elsewhere', 'https://example.org/')")  # fmt: skip
    assert _login(client, "alice@s1.pupil", PASSWORD).status_code == 303
    alice, amir = world.ids["alice"], world.ids["amir"]
    for page in ("", "menu", "money", "stats"):
        r = client.get(f"/app/en/{page}")
        assert r.status_code == 200, (page, r.text[:300])
        assert "Alice Aliyeva" in r.text and "Amir" not in r.text
        assert 'class="children"' not in r.text  # no child switcher
        assert 'href="/app/en/learning' in r.text and 'href="/app/en/settings' not in r.text
        other = client.get(f"/app/en/{page}?child={amir}")
        assert other.status_code == 404, page
    assert client.get(f"/app/en/?child={alice}").status_code == 200
    learning = client.get("/app/en/learning")
    assert "Bilimland" in learning.text and 'href="https://bilimland.kz/"' in learning.text
    assert "Elsewhere" not in learning.text
    for guardian_only in ("settings", "restrictions"):
        r = client.get(f"/app/en/{guardian_only}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/app/en/login"
    assert client.get("/people", follow_redirects=False).status_code != 200  # not the console


def test_guardian_has_no_learning_tab(client: TestClient) -> None:
    assert _login(client, "mum@qadam.kz", PASSWORD).status_code == 303
    assert 'href="/app/en/learning' not in client.get("/app/en/").text
    r = client.get("/app/en/learning", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/app/en/login"


def test_a_student_is_refused_the_console(client: TestClient) -> None:
    r = sign_in(client, "alice@s1.pupil", PASSWORD)
    assert r.status_code == 200 and "This console is for school staff." in r.text
    assert _login(client, "alice@s1.pupil", PASSWORD).status_code == 303  # the app lets her in
    assert client.get("/people", follow_redirects=False).status_code == 403


def test_the_code_page_in_another_language(client: TestClient) -> None:
    r = client.post("/app/en/language", data={"to": "kk", "page": "code"}, headers=SAME_ORIGIN,
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/app/kk/code"
    page = client.get("/app/kk/code")
    assert page.status_code == 200 and "Кодпен кіру" in page.text and 'for="code"' in page.text


def test_rates_a_dish_served_to_themself(
    client: TestClient, world: World, database_url: str
) -> None:
    alice, amir = world.ids["alice"], world.ids["amir"]
    seed = seed_menu(database_url, alice)  # Alice had today's breakfast set
    assert _login(client, "alice@s1.pupil", PASSWORD).status_code == 303
    menu = client.get("/app/en/menu")
    assert menu.status_code == 200 and "what you must not eat" in menu.text
    assert "/app/en/restrictions" not in menu.text  # the guardian's page
    form = {"dish": seed["porridge"], "day": str(seed["today"]), "score": "5", "comment": ""}
    other = client.post("/app/en/rate", data={**form, "child": amir}, headers=SAME_ORIGIN,
                        follow_redirects=False)  # fmt: skip
    assert other.status_code == 404 and ratings(database_url) == []
    r = client.post("/app/en/rate", data={**form, "child": alice}, headers=SAME_ORIGIN,
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    assert len(ratings(database_url)) == 1
