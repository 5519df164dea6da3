"""The console's pages in-process (HTML through a TestClient that posts like a browser):
sign-in, the role and scope matrix, CSRF, the language, the password change. The same flows in
Chromium are in test_console_browser.py."""

from __future__ import annotations

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient

from cloud.console.guard import COOKIE

EMAILS = {
    "platform_admin": "root@qadam.kz",
    "district_authority": "d1@qadam.kz",
    "school_admin": "admin1@qadam.kz",
    "canteen_operator": "cook1@qadam.kz",
    "technician": "tech1@qadam.kz",
    "guardian": "mum@qadam.kz",
}


def test_pages_need_a_session(client: TestClient) -> None:
    for path in ("/", "/today", "/live", "/password"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next="), r.headers["location"]


def test_sign_in_sets_a_safe_cookie_and_signs_out(client: TestClient, database_url: str) -> None:
    r = sign_in(client, "admin1@qadam.kz", PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attr in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
        assert attr.lower() in cookie.lower(), cookie
    assert client.get("/today").status_code == 200
    r = client.post("/logout", headers=SAME_ORIGIN, follow_redirects=False)
    assert r.status_code == 303
    # the session is revoked in the database, not only forgotten by the browser
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM sessions WHERE revoked_at IS NULL").fetchone()
    assert row is not None and row[0] == 0
    assert client.get("/today", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "Wrong e-mail or password."),
        ("ru", "Неверный адрес электронной почты или пароль."),
        ("kk", "Электрондық пошта немесе құпиясөз қате."),
    ],
)
def test_wrong_password_is_refused_in_the_language(
    client: TestClient, database_url: str, lang: str, text: str
) -> None:
    r = sign_in(client, "admin1@qadam.kz", "not the password", lang=lang)
    assert r.status_code == 200 and text in r.text and f'lang="{lang}"' in r.text
    assert COOKIE not in r.headers.get("set-cookie", "")
    with psycopg.connect(database_url) as conn:  # audited and counted like an API login
        row = conn.execute("SELECT outcome FROM login_attempts").fetchone()
    assert row is not None and row[0] == "failed"


def test_sign_in_is_throttled_like_the_api(client: TestClient) -> None:
    for _ in range(5):
        assert "Wrong e-mail" in sign_in(client, "admin1@qadam.kz", "wrong").text
    r = sign_in(client, "admin1@qadam.kz", PASSWORD)
    assert r.status_code == 429 and "Too many failed sign-ins" in r.text
    assert int(r.headers["Retry-After"]) > 0


def test_a_guardian_is_refused_the_console(client: TestClient, database_url: str) -> None:
    r = sign_in(client, "mum@qadam.kz", PASSWORD)
    assert r.status_code == 200 and "This console is for school staff." in r.text
    assert COOKIE not in r.headers.get("set-cookie", "")
    with psycopg.connect(database_url) as conn:  # the session the login made is revoked
        row = conn.execute("SELECT count(*) FROM sessions WHERE revoked_at IS NULL").fetchone()
    assert row is not None and row[0] == 0


def test_a_guardian_token_in_the_cookie_opens_nothing(
    client: TestClient, world: World, database_url: str
) -> None:
    from auth_tokens import session_headers

    token = session_headers(database_url, world.users["guardian"])["Authorization"][7:]
    client.cookies.set(COOKIE, token)
    for path in ("/today", "/live", "/password"):
        assert client.get(path).status_code == 403, path


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no Sec-Fetch-Site, no Origin: refused
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling sub-domain is another site's code
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ],
)
def test_unsafe_requests_without_same_origin_are_refused(
    client: TestClient, database_url: str, headers: dict[str, str]
) -> None:
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    for path, data in (
        ("/logout", {}),
        ("/lang", {"lang": "ru", "next": "/"}),
        ("/password", {"current": PASSWORD, "new": "0123456789ab", "repeat": "0123456789ab"}),
        ("/login", {"email": "admin1@qadam.kz", "password": PASSWORD}),
    ):
        r = client.post(path, data=data, headers=headers, follow_redirects=False)
        assert r.status_code == 403, (path, r.status_code)
    # nothing changed: still signed in, same password, no language stored
    assert client.get("/today").status_code == 200
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT locale FROM users WHERE email = 'admin1@qadam.kz'").fetchone()
    assert row is not None and row[0] is None


def test_origin_of_this_host_passes_without_sec_fetch_site(client: TestClient) -> None:
    r = client.post(
        "/login",
        data={"email": "admin1@qadam.kz", "password": PASSWORD},
        headers={"Origin": "https://testserver"},
        follow_redirects=False,
    )
    assert r.status_code == 303


def _as(client: TestClient, role: str) -> TestClient:
    assert sign_in(client, EMAILS[role], PASSWORD).status_code == 303
    return client


@pytest.mark.parametrize(
    ("role", "today", "live"),
    [
        ("platform_admin", 200, 200),
        ("district_authority", 200, 200),
        ("school_admin", 200, 200),
        ("canteen_operator", 403, 403),
        ("technician", 403, 403),
    ],
)
def test_role_matrix(client: TestClient, role: str, today: int, live: int) -> None:
    """The same roles as the API's routes behind each page (reports, events)."""
    c = _as(client, role)
    assert c.get("/today").status_code == today
    assert c.get("/live").status_code == live
    assert c.get("/password").status_code == 200


def _since() -> str:
    return "2025-10-01T00:00"


def test_live_events_are_scoped_like_the_api(client: TestClient, world: World) -> None:
    """api_world: gate-1 (s1: Alice, Amir), gate-2 (s2: Bob), gate-3 (s3, another district)."""
    expect = {
        "school_admin": ({"Alice Aliyeva", "Amir Amirov"}, {"Bob Bekov", "Cara Caspian"}),
        "district_authority": (
            {"Alice Aliyeva", "Amir Amirov", "Bob Bekov"},
            {"Cara Caspian"},
        ),
        "platform_admin": ({"Alice Aliyeva", "Bob Bekov", "Cara Caspian"}, set()),
    }
    for role, (seen, unseen) in expect.items():
        client.cookies.clear()
        c = _as(client, role)
        r = c.get("/live", params={"since": _since()})
        assert r.status_code == 200
        for name in seen:
            assert name in r.text, (role, name)
        for name in unseen:
            assert name not in r.text, (role, name)


def test_live_school_filter_outside_scope_is_not_found(client: TestClient) -> None:
    c = _as(client, "school_admin")
    r = c.get("/live", params={"school": "s3", "since": _since()})
    assert "No such school." in r.text and "Cara" not in r.text
    r = c.get("/today", params={"school": "s3"})
    assert r.status_code == 404


def test_live_filters_and_keyset_pages(client: TestClient, world: World, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for seq in range(3, 63):  # 60 more taps at gate-1, some denied
            conn.execute(
                "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
                " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at)"
                " VALUES ('gate-1', 1, %s, 's1', NULL, 'aaaaaaaaaaaaaaaa', 'tap', 'in', %s,"
                " %s, %s, true, 1000, %s::timestamptz + make_interval(secs => %s))",
                (seq, "denied" if seq % 3 == 0 else "granted",
                 "unknown_card" if seq % 3 == 0 else "ok",
                 "2025-10-09T09:00:00Z", "2025-10-09T09:00:00Z", seq),
            )  # fmt: skip
    c = _as(client, "school_admin")
    r = c.get("/live", params={"since": _since(), "result": "denied"})
    assert r.status_code == 200 and "20 events" in r.text
    assert "granted</td>" not in r.text
    r = c.get("/live", params={"since": _since(), "device": "gate-1"})
    assert "62 events" in r.text and r.text.count("<tr>") == 50 + 1  # the header row
    import re

    nxt = re.search(r'id="next" href="([^"]+)"', r.text)
    assert nxt is not None
    r2 = c.get(nxt.group(1).replace("&amp;", "&"))
    assert r2.status_code == 200 and r2.text.count("<tr>") == 12 + 1
    assert 'id="next"' not in r2.text
    r3 = c.get("/live", params={"cursor": "garbage!"})
    assert "That page link is broken." in r3.text


def test_today_counts(client: TestClient, world: World, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        day = conn.execute("SELECT (now() AT TIME ZONE 'Asia/Almaty')::date").fetchone()
        assert day is not None
        # Alice came at 08:10 (on time), Amir at 09:05 (late, then left)
        conn.execute(
            "INSERT INTO attendance (person_id, day, school_id, first_in, last_out, passages)"
            " VALUES (%s, %s, 's1', (%s + time '08:10') AT TIME ZONE 'Asia/Almaty', NULL, 1),"
            " (%s, %s, 's1', (%s + time '09:05') AT TIME ZONE 'Asia/Almaty',"
            "  (%s + time '12:00') AT TIME ZONE 'Asia/Almaty', 2)",
            (world.ids["alice"], day[0], day[0], world.ids["amir"], day[0], day[0], day[0]),
        )
        conn.execute(
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
            " meal_category, occurred_at, day) VALUES ('gate-1', 1, 900, 's1', %s, 1, now(), %s)",
            (world.ids["alice"], day[0]),
        )
    c = _as(client, "school_admin")
    r = c.get("/today")
    assert r.status_code == 200
    for ident, n in (("arrived", 2), ("late", 1), ("absent", 0), ("left", 1)):
        assert f'id="{ident}">{n}<' in r.text, ident
    assert "free" in r.text and "Free" in r.text  # the category and the school's name of it
    assert "1 reader of 1 is offline." in r.text and "gate-1" in r.text


def test_language_switch_is_kept_per_user(client: TestClient, database_url: str) -> None:
    c = _as(client, "school_admin")
    r = c.post("/lang", data={"lang": "ru", "next": "/today"}, headers=SAME_ORIGIN,
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/today"
    assert "Сегодня" in c.get("/today").text
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT locale FROM users WHERE email = 'admin1@qadam.kz'").fetchone()
    assert row is not None and row[0] == "ru"
    c.cookies.clear()  # another browser: the user's choice comes back at sign-in
    r = sign_in(c, "admin1@qadam.kz", PASSWORD, lang="en")
    assert "qadam_lang=ru" in r.headers.get("set-cookie", "")
    r = c.post("/lang", data={"lang": "xx"}, headers=SAME_ORIGIN)
    assert r.status_code == 422


def test_password_change(client: TestClient, database_url: str, world: World) -> None:
    from auth_tokens import session_headers

    other = session_headers(database_url, world.users["school_admin"])
    c = _as(client, "school_admin")
    form = {"current": "wrong", "new": "a new password!", "repeat": "a new password!"}
    r = c.post("/password", data=form, headers=SAME_ORIGIN)
    assert "The current password is wrong." in r.text
    r = c.post("/password", data={**form, "current": PASSWORD, "repeat": "x"}, headers=SAME_ORIGIN)
    assert "The two new passwords differ." in r.text
    r = c.post("/password", data={**form, "current": PASSWORD, "new": "short",
               "repeat": "short"}, headers=SAME_ORIGIN)  # fmt: skip
    assert "at least 10 characters" in r.text
    r = c.post("/password", data={**form, "current": PASSWORD}, headers=SAME_ORIGIN)
    assert r.status_code == 200 and "Your password is changed." in r.text, r.text[-1500:]
    assert c.get("/today").status_code == 200  # this session stays
    assert client.get("/api/v1/auth/me", headers=other).status_code == 401  # others end
    c.cookies.clear()
    assert "Wrong e-mail or password." in sign_in(c, "admin1@qadam.kz", PASSWORD).text
    assert sign_in(c, "admin1@qadam.kz", "a new password!").status_code == 303


def test_api_docs_are_served_from_our_own_files(client: TestClient) -> None:
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        r = client.get(path)
        assert r.status_code == 200
        assert "cdn" not in r.text.lower() and "googleapis" not in r.text
        src = f"/static/vendor/{asset}?_hash="
        assert src in r.text
        url = r.text.split(src.split("?")[0], 1)[1].split('"', 1)[0]
        js = client.get(f"/static/vendor/{asset}{url}")
        assert js.status_code == 200 and "immutable" in js.headers["cache-control"]
        assert js.headers["content-encoding"] == "gzip"  # the client asked for it
    assert client.get("/static/../settings.py").status_code == 404
    assert client.get("/static/vendor/nothing.js").status_code == 404


def test_today_rollup_of_a_district(client: TestClient, world: World, database_url: str) -> None:
    from console_helpers import populate_today

    populate_today(database_url, world.ids)
    c = _as(client, "district_authority")
    r = c.get("/today")
    assert r.status_code == 200 and "Today in your schools" in r.text
    assert "School s1" in r.text and "School s2" in r.text and "School s3" not in r.text
    assert "2 / 2" in r.text  # s1: both pupils came in
    client.cookies.clear()
    c = _as(client, "platform_admin")
    r = c.get("/today")
    assert "School s3" in r.text and "3 schools" in r.text


def test_a_missing_vendor_file_is_said(caplog: pytest.LogCaptureFixture) -> None:
    from cloud.console import static

    with caplog.at_level("WARNING", logger="qadam.console"):
        assert static.url("vendor/not-copied.js") == "/static/vendor/not-copied.js?_hash=missing"
    assert "run ./dev" in caplog.text


def test_pages_are_not_framed_nor_cached(client: TestClient) -> None:
    c = _as(client, "school_admin")
    for path in ("/login", "/today", "/live"):
        r = c.get(path)
        assert r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["referrer-policy"] == "same-origin"


def test_live_filters_by_class_and_name(client: TestClient, world: World) -> None:
    """api_world: Alice is in class 5A of s1, Amir in none; Bob is at s2 (same district)."""
    c = _as(client, "school_admin")
    r = c.get("/live", params={"since": _since(), "class": str(world.ids["class_id"])})
    assert "Alice Aliyeva" in r.text and "Amir Amirov" not in r.text
    assert 'id="f-class"' in r.text and ">5A<" in r.text
    r = c.get("/live", params={"since": _since(), "name": "amir"})
    assert "Amir Amirov" in r.text and "Alice Aliyeva" not in r.text
    r = c.get("/live", params={"since": _since(), "name": "%"})  # a literal %, not a wildcard
    assert "No events match." in r.text
    r = c.get("/live", params={"since": _since(), "class": "5A"})
    assert "Unknown class." in r.text
    client.cookies.clear()
    c = _as(client, "district_authority")  # a name of another district finds nothing
    r = c.get("/live", params={"since": _since(), "name": "Cara"})
    assert "Cara Caspian" not in r.text and "No events match." in r.text
