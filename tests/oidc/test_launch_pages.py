"""Part 5 of issue #17's first part (D29-F): a platform enabled for a school shows in its
pupils' Learning tab and opens signed in; guardians see which platforms their child used."""

from __future__ import annotations

import psycopg
from api_world import PASSWORD
from fastapi.testclient import TestClient
from oidc_helpers import Platform, code_for, exchange, register

LAUNCH = "https://books.example/login-with-qadam"


def _console(client: TestClient, email: str) -> None:
    r = client.post("/login", data={"email": email, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303, r.text


def _app(client: TestClient, email: str) -> None:
    client.cookies.clear()
    r = client.post("/app/en/login", data={"email": email, "password": PASSWORD})
    assert r.status_code == 303, r.text


def test_enable_for_a_school_lists_it_in_that_schools_learning_tab(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    _console(client, "root@qadam.kz")
    form = {"client_id": platform.client_id, "school_id": "s1", "launch_url": LAUNCH}
    assert client.post("/sso/schools", data=form).status_code == 303
    for bad in ({**form, "launch_url": "http://books.example/x"},
                {**form, "school_id": "nope"}, {**form, "client_id": "nope"}):  # fmt: skip
        r = client.post("/sso/schools", data=bad)
        assert r.status_code == 200 and 'role="alert"' in r.text, bad
    _app(client, "alice@s1.pupil")
    page = client.get("/app/en/learning").text
    assert 'id="sso-platforms"' in page and f'href="{LAUNCH}"' in page and "Oqulyq" in page
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT action, after->>'school_id' FROM audit_log WHERE entity = 'oidc_client_schools'"
        ).fetchall()
    assert rows == [("link", "s1")]


def test_a_school_admin_enables_for_their_own_school_only(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    form = {"client_id": platform.client_id, "school_id": "s1", "launch_url": LAUNCH}
    _console(client, "cook1@qadam.kz")
    assert client.post("/sso/schools", data=form).status_code == 403
    client.cookies.clear()
    _console(client, "admin1@qadam.kz")  # s1's
    r = client.post("/sso/schools", data={**form, "school_id": "s2"})
    assert r.status_code == 200 and "No such school." in r.text
    assert "s2" not in client.get("/sso").text.split('id="l-school"')[1].split("</select>")[0]
    assert client.post("/sso/schools", data=form).status_code == 303
    r = client.post("/sso/schools/remove", data={**form, "school_id": "s2"})
    assert r.status_code == 404
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT school_id FROM oidc_client_schools").fetchall() == [("s1",)]
    r = client.post("/sso/schools/remove", data={"client_id": platform.client_id,
                                                  "school_id": "s1"})  # fmt: skip
    assert r.status_code == 303
    _app(client, "alice@s1.pupil")
    assert 'id="sso-platforms"' not in client.get("/app/en/learning").text


def test_guardians_see_the_platforms_their_child_used(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    _app(client, "mum@qadam.kz")
    page = client.get("/app/en/platforms")
    assert page.status_code == 200 and "No platform yet." in page.text
    assert 'href="/app/en/platforms"' in page.text  # a tab of hers
    client.cookies.clear()
    code_for(client, platform)  # Alice signs in to the platform
    _app(client, "mum@qadam.kz")
    page = client.get("/app/en/platforms").text
    assert "Alice Aliyeva" in page and "Oqulyq" in page and "Last signed in" in page
    # a guardian of no one sees nothing of Alice's; a pupil has no such tab
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM guardian_students")
    assert "Oqulyq" not in client.get("/app/en/platforms").text
    _app(client, "alice@s1.pupil")
    assert client.get("/app/en/platforms").status_code == 303
    assert 'href="/app/en/platforms"' not in client.get("/app/en/").text


def test_a_platform_of_another_school_is_not_listed(
    client: TestClient, database_url: str, world: object
) -> None:
    other = register(database_url, "Elsewhere", ["https://else.example/cb"], ["openid"])
    _console(client, "root@qadam.kz")
    form = {"client_id": other.client_id, "school_id": "s2", "launch_url": LAUNCH}
    assert client.post("/sso/schools", data=form).status_code == 303
    _app(client, "alice@s1.pupil")
    assert "Elsewhere" not in client.get("/app/en/learning").text


def test_a_guardian_withdraws_the_childs_consent_and_the_platform_loses_access(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    code, verifier = code_for(client, platform, scope="openid role offline_access")
    tokens = exchange(client, platform, code, verifier).json()
    _app(client, "mum@qadam.kz")
    form = {"child": "999999", "client_id": platform.client_id}
    assert client.post("/app/en/platforms/withdraw", data=form).status_code == 404  # not hers
    with psycopg.connect(database_url) as conn:
        alice = conn.execute("SELECT person_id FROM student_accounts").fetchone()[0]  # type: ignore[index]
    form["child"] = str(alice)
    r = client.post("/app/en/platforms/withdraw", data=form)
    assert r.status_code == 303
    assert "Oqulyq" not in client.get("/app/en/platforms").text
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/oidc/userinfo", headers=bearer).status_code == 401
    r = client.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(platform.client_id, platform.secret),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert client.post("/app/en/platforms/withdraw", data=form).status_code == 404  # done
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT action, actor FROM audit_log WHERE entity = 'oidc_consents' ORDER BY id"
        ).fetchall() == [("create", "alice@s1.pupil"), ("withdraw", "mum@qadam.kz")]
