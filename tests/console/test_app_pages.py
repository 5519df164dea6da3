"""The parents' app and guardian invitations, in-process (D27-F): the API's invitation route and
its scope, the one-time link (set a password, signed in; used, replaced, expired or unknown
links refused with nothing changed), the feed scoped to the guardian's own children, the
console's guardians page and letter, the manifest, the service worker and the app's push
subscription."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any

import psycopg
from api_world import PASSWORD, World, login
from console_helpers import SAME_ORIGIN, sign_in
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

NEW_PASSWORD = "a new password 1"


def _invite(client: TestClient, admin: str, guardian_id: int) -> Any:
    token = login(client, admin)
    return client.post(f"/api/v1/guardians/{guardian_id}/invitations",
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def _state(database_url: str, guardian_id: int) -> tuple[Any, ...]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT u.password_hash, (SELECT count(*) FROM sessions s WHERE s.user_id = u.id),"
            " (SELECT array_agg((used_at IS NULL, revoked_at IS NULL) ORDER BY id)"
            "  FROM guardian_invitations WHERE guardian_id = u.id)"
            " FROM users u WHERE u.id = %s",
            (guardian_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_the_api_invites_a_guardian_of_the_school_only(client: TestClient, world: World) -> None:
    mum = world.ids["guardian_id"]
    r = _invite(client, "admin1@qadam.kz", mum)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["guardian_id"] == mum
    assert re.fullmatch(r"https://testserver/app/invite/[A-Za-z0-9_-]{43}", body["url"])
    # the platform may invite anyone; another school's admin cannot see this guardian
    assert _invite(client, "root@qadam.kz", mum).status_code == 201
    assert _invite(client, "admin3@qadam.kz", mum).status_code == 404
    assert _invite(client, "admin1@qadam.kz", 10**9).status_code == 404
    # a staff account is not a guardian
    assert _invite(client, "admin1@qadam.kz", world.users["technician"]).status_code == 404
    for who in ("mum@qadam.kz", "tech1@qadam.kz", "d1@qadam.kz"):
        assert _invite(client, who, mum).status_code == 403


def test_the_link_sets_a_password_and_signs_in_once(
    client: TestClient, world: World, database_url: str
) -> None:
    mum = world.ids["guardian_id"]
    link = _path(_invite(client, "admin1@qadam.kz", mum).json()["url"])
    page = client.get(link, headers={"Accept-Language": "ru"})
    assert page.status_code == 200
    assert "Задайте пароль" in page.text and "mum@qadam.kz" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"  # the token is in the URL
    before = _state(database_url, mum)

    # too short, or the two differ: shown again, nothing changed
    for pw, again in (("short", "short"), (NEW_PASSWORD, NEW_PASSWORD + "x")):
        r = client.post(link, data={"lang": "en", "password": pw, "repeat": again},
                        headers=SAME_ORIGIN)  # fmt: skip
        assert r.status_code == 200 and 'role="alert"' in r.text
    assert _state(database_url, mum) == before
    # a cross-site post is refused before anything
    r = client.post(link, data={"password": NEW_PASSWORD, "repeat": NEW_PASSWORD},
                    headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
    assert r.status_code == 403
    assert _state(database_url, mum) == before

    r = client.post(link, data={"lang": "kk", "password": NEW_PASSWORD, "repeat": NEW_PASSWORD},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/app/kk/"
    assert "qadam_session=" in r.headers["set-cookie"]
    feed = client.get("/app/kk/")
    assert feed.status_code == 200 and "Alice Aliyeva" in feed.text
    assert 'lang="kk"' in feed.text

    # used: refused in the page's language, nothing changed
    after = _state(database_url, mum)
    again = client.get(link + "?lang=en")  # (the cookie says kk now)
    assert again.status_code == 410 and "already been used" in again.text
    r = client.post(link, data={"password": "another password", "repeat": "another password"},
                    headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 410
    assert _state(database_url, mum) == after
    # the new password signs in through the app's own sign-in
    client.cookies.clear()
    r = client.post("/app/en/login", data={"email": "mum@qadam.kz", "password": NEW_PASSWORD},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/app/en/"


def test_a_new_link_revokes_the_old_and_expired_or_unknown_links_are_refused(
    client: TestClient, world: World, database_url: str
) -> None:
    mum = world.ids["guardian_id"]
    first = _path(_invite(client, "admin1@qadam.kz", mum).json()["url"])
    second = _path(_invite(client, "admin1@qadam.kz", mum).json()["url"])
    r = client.get(first, headers={"Accept-Language": "en"})
    assert r.status_code == 410 and "replaced by a newer one" in r.text
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE guardian_invitations SET created_at = now() - interval '20 days',"
                     " expires_at = now() - interval '1 second'"
                     " WHERE used_at IS NULL AND revoked_at IS NULL")  # fmt: skip
    before = _state(database_url, mum)
    r = client.post(second, data={"password": NEW_PASSWORD, "repeat": NEW_PASSWORD},
                    headers={**SAME_ORIGIN, "Accept-Language": "ru"})  # fmt: skip
    assert r.status_code == 410 and "Срок действия" in r.text
    assert _state(database_url, mum) == before
    r = client.get("/app/invite/" + "A" * 43, headers={"Accept-Language": "kk"})
    assert r.status_code == 404 and "жарамсыз" in r.text


def _guardian_client(client: TestClient) -> TestClient:
    r = client.post("/app/en/login", data={"email": "mum@qadam.kz", "password": PASSWORD},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    return client


def test_the_feed_shows_own_children_only(client: TestClient, world: World) -> None:
    assert client.get("/app/en/", follow_redirects=False).headers["location"] == "/app/en/login"
    _guardian_client(client)
    r = client.get("/app/en/")
    assert r.status_code == 200
    assert "Alice Aliyeva" in r.text and "Arrived" in r.text
    assert "School s1" in r.text
    # another child, of this school or another: not found, as the API answers
    for other in (world.ids["amir"], world.ids["bob"], world.ids["cara"], 10**9):
        r = client.get(f"/app/en/?child={other}")
        assert r.status_code == 404, other
        assert "Amir" not in r.text and "Bob" not in r.text
    assert client.get("/app/en/?cursor=broken").status_code == 404
    assert client.get("/app/xx/").status_code == 404
    # the language switch keeps the child and the account's choice
    r = client.post("/app/en/language", data={"to": "ru", "page": "", "child": world.ids["alice"]},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.headers["location"] == f"/app/ru/?child={world.ids['alice']}"
    assert client.get("/app/", follow_redirects=False).headers["location"] == "/app/ru/"
    assert "Пришёл" in client.get("/app/ru/").text


def test_the_feed_says_how_a_pupil_was_identified_without_a_card(
    client: TestClient, world: World, database_url: str
) -> None:
    # D29-J: a QR or PIN entry is an event with its method; the parents see which it was
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE events SET method = 'qr' WHERE device_id = 'gate-1' AND seq = 1")
    _guardian_client(client)
    for lang, text in (("en", "by QR code"), ("ru", "по QR-коду"), ("kk", "QR-кодпен")):
        page = client.get(f"/app/{lang}/?child={world.ids['alice']}").text
        assert f'<span class="how">{text}</span>' in page, lang
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE events SET method = NULL WHERE device_id = 'gate-1' AND seq = 1")
    assert 'class="how"' not in client.get("/app/en/").text  # a card: nothing added


def test_staff_cannot_use_the_app(client: TestClient) -> None:
    r = client.post("/app/en/login", data={"email": "admin1@qadam.kz", "password": PASSWORD},
                    headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 200 and "School staff use the console" in r.text
    assert "qadam_session" not in client.cookies
    sign_in(client, "admin1@qadam.kz", PASSWORD)  # a console session opens no app page
    assert client.get("/app/en/", follow_redirects=False).status_code == 303


def test_sign_out_clears_the_service_workers_copies(client: TestClient) -> None:
    _guardian_client(client)
    r = client.post("/app/en/logout", headers=SAME_ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and r.headers["clear-site-data"] == '"cache", "storage"'
    client.cookies.clear()
    assert client.get("/app/en/", follow_redirects=False).status_code == 303


def test_the_guardians_page_and_the_letter(
    client: TestClient, world: World, database_url: str
) -> None:
    sign_in(client, "tech1@qadam.kz", PASSWORD)
    assert client.get("/guardians").status_code == 403
    client.cookies.clear()
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    page = client.get("/guardians")
    assert page.status_code == 200 and "mum@qadam.kz" in page.text and "Alice Aliyeva" in page.text
    mum = world.ids["guardian_id"]
    r = client.post(f"/guardians/{mum}/invitation", data={"letter_lang": "ru"},
                    headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
    assert r.status_code == 403
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM guardian_invitations").fetchone() == (0,)
    r = client.post(f"/guardians/{mum}/invitation", data={"letter_lang": "ru"},
                    headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 200
    assert 'lang="ru"' in r.text and "Приглашение в приложение qadam" in r.text
    assert "<svg" in r.text  # the QR code, inline
    link = re.search(r'<code id="invite-link">([^<]+)</code>', r.text)
    assert link is not None and link.group(1).endswith("?lang=ru")
    assert client.get(_path(link.group(1))).status_code == 200
    assert "invited, until" in client.get("/guardians").text
    # a guardian out of the school's scope
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "INSERT INTO users (email, password_hash, role)"
            " VALUES ('far@qadam.kz', '!x', 'guardian') RETURNING id"
        ).fetchone()
    assert row is not None
    assert client.post(f"/guardians/{row[0]}/invitation", headers=SAME_ORIGIN).status_code == 404


def test_manifest_and_service_worker(client: TestClient) -> None:
    m = client.get("/app/kk/manifest.webmanifest")
    assert m.status_code == 200 and m.headers["content-type"] == "application/manifest+json"
    doc = m.json()
    assert doc["start_url"] == "/app/kk/" and doc["scope"] == "/app/"
    assert doc["display"] == "standalone" and doc["name"] == "qadam ата-аналарға"
    assert {i["sizes"] for i in doc["icons"]} == {"192x192", "512x512"}
    for icon in doc["icons"]:
        assert client.get(icon["src"]).status_code == 200
    sw = client.get("/sw.js")
    assert sw.status_code == 200 and sw.headers["content-type"].startswith("text/javascript")
    assert sw.headers["cache-control"] == "no-cache"
    assert 'addEventListener("push"' in sw.text
    assert client.get("/app/xx/manifest.webmanifest").status_code == 404
    assert client.get("/app/ru/offline").status_code == 200


def _browser_keys() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    return {"p256dh": b64(point), "auth": b64(b"0123456789abcdef")}


def test_the_app_stores_a_push_subscription_for_its_guardian(
    client: TestClient, database_url: str
) -> None:
    body = {"endpoint": "https://fcm.googleapis.com/fcm/send/abc", "keys": _browser_keys()}
    r = client.post("/app/push/subscriptions", json=body, headers=SAME_ORIGIN)
    assert r.status_code == 401
    _guardian_client(client)
    r = client.post("/app/push/subscriptions", json={**body, "endpoint": "https://evil.example/x"},
                    headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 422
    r = client.post("/app/push/subscriptions", json=body, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM push_subscriptions").fetchone() == (0,)
    r = client.post("/app/push/subscriptions", json=body, headers=SAME_ORIGIN)
    assert r.status_code == 201, r.text
    assert r.json()["lang"] == "en"  # the account's language (chosen at sign-in on /app/en/)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT u.email FROM push_subscriptions p JOIN users u"
                           " ON u.id = p.user_id").fetchone()  # fmt: skip
    assert row == ("mum@qadam.kz",)
    assert client.get("/app/push/key").status_code == 404  # no VAPID key in these settings


def test_children_in_two_schools_each_in_its_own_time_zone(
    client: TestClient, world: World, database_url: str
) -> None:
    """The switcher lists both children; each feed's times are in that child's school's zone."""
    from api_world import T_EVENT

    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)",
                     (world.ids["guardian_id"], world.ids["cara"]))  # fmt: skip
        conn.execute("UPDATE schools SET timezone = 'Europe/Moscow' WHERE id = 's3'")
    _guardian_client(client)
    page = client.get("/app/en/")
    assert 'aria-label="My children"' in page.text
    assert "Alice Aliyeva" in page.text and "Cara Caspian" in page.text
    from zoneinfo import ZoneInfo

    for child, zone, school in (("alice", "Asia/Almaty", "School s1"),
                                ("cara", "Europe/Moscow", "School s3")):  # fmt: skip
        r = client.get(f"/app/en/?child={world.ids[child]}")
        assert r.status_code == 200 and school in r.text
        local = datetime.fromisoformat(T_EVENT).astimezone(ZoneInfo(zone))
        assert f"{local.day} {local:%B %Y}, {local:%H:%M}" in r.text, (child, local)
