"""Forgot password and invitations by e-mail (D28-B), with a real SMTP server (aiosmtpd) in the
test process receiving the real messages from the outbox worker: the reset link works once and
ends every session, an unknown address gets the same answer and no mail, asking is throttled,
the mail is in the account's language, a refused address becomes a dead letter, and without
SMTP settings the pages say so and nothing is queued. The app's page in Chromium at 390 px
writes docs/screenshots/app/forgot-*.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import uvicorn
from api_world import PASSWORD, World
from console_helpers import SAME_ORIGIN, sign_in
from email_smtp import Inbox, mail_settings, mail_worker, smtp_server
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, expect
from test_console_browser import PHONE, Tab, browser  # noqa: F401 (the Chromium fixture)

from cloud.api.app import create_app
from cloud.api.deps import get_login_throttle
from cloud.auth.throttle import LoginThrottle
from cloud.settings import Settings

APP_SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots" / "app"
SENT = "If an account has this e-mail address, a link to set a new password is on its way"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mail(database_url: str, world: World) -> Iterator[tuple[TestClient, Inbox, Any, Clock]]:
    """A console with e-mail through a real SMTP server: (client, inbox, worker, clock)."""
    with smtp_server() as (inbox, port):
        settings = Settings(database_url=database_url, auth_required=True, **mail_settings(port))
        app = create_app(settings)
        clock = Clock()
        throttle = LoginThrottle(clock=clock)
        app.dependency_overrides[get_login_throttle] = lambda: throttle
        with TestClient(app, base_url="https://testserver",
                        headers={"Accept-Language": "en"}) as c:  # fmt: skip
            yield c, inbox, mail_worker(database_url, settings), clock


def ask(c: TestClient, email: str, path: str = "/forgot") -> Any:
    return c.post(path, data={"email": email}, headers=SAME_ORIGIN)


def rows(url: str, q: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(q, params).fetchall()


def test_the_link_works_once_and_ends_every_session(
    mail: tuple[TestClient, Inbox, Any, Clock], database_url: str
) -> None:
    c, inbox, worker, _ = mail
    other = TestClient(c.app, base_url="https://testserver")
    assert sign_in(other, "admin1@qadam.kz", PASSWORD).status_code == 303
    assert other.get("/today").status_code == 200  # a session elsewhere

    r = ask(c, "Admin1@qadam.kz ")
    assert r.status_code == 200 and SENT in r.text
    assert worker.run_once() == 1
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["To"] == "admin1@qadam.kz" and msg["From"] == "no-reply@qadam.kz"
    assert msg["Subject"] == "qadam: set a new password"
    link = inbox.link()
    token = urlsplit(link).path.rsplit("/", 1)[1]
    # only the token's hash is stored; the mail's body is cleared once sent
    assert rows(database_url, "SELECT count(*) FROM password_resets WHERE token_hash ="
                " sha256(convert_to(%s, 'UTF8'))", (token,)) == [(1,)]  # fmt: skip
    assert rows(database_url, "SELECT body IS NULL, sent_at IS NOT NULL FROM email_messages") == [
        (True, True)
    ]
    assert token not in str(rows(database_url, "SELECT * FROM password_resets"))

    path = urlsplit(link).path + "?" + urlsplit(link).query
    form = c.get(path)
    assert form.status_code == 200 and "admin1@qadam.kz" in form.text
    assert form.headers["Referrer-Policy"] == "no-referrer"
    short = c.post(urlsplit(link).path, data={"new": "short", "repeat": "short"},
                   headers=SAME_ORIGIN)  # fmt: skip
    assert "at least 10 characters" in short.text
    done = c.post(urlsplit(link).path, data={"new": "a new long password", "repeat":
                  "a new long password"}, headers=SAME_ORIGIN)  # fmt: skip
    assert done.status_code == 200 and 'id="reset-done"' in done.text
    # every session ended; the new password signs in, the old does not
    assert other.get("/today", follow_redirects=False).status_code == 303
    assert sign_in(c, "admin1@qadam.kz", PASSWORD).status_code == 200
    assert sign_in(c, "admin1@qadam.kz", "a new long password").status_code == 303
    # the link works once
    again = c.post(urlsplit(link).path, data={"new": "yet another password", "repeat":
                   "yet another password"}, headers=SAME_ORIGIN)  # fmt: skip
    assert again.status_code == 410 and "already been used" in again.text
    assert c.get("/reset/not-a-token").status_code == 404


def test_unknown_address_same_answer_and_no_mail(
    mail: tuple[TestClient, Inbox, Any, Clock], database_url: str
) -> None:
    c, inbox, worker, _ = mail
    known = ask(c, "admin1@qadam.kz")
    unknown = ask(c, "nobody@qadam.kz")
    assert known.status_code == unknown.status_code == 200
    strip = lambda t: t.replace("admin1@qadam.kz", "X").replace("nobody@qadam.kz", "X")  # noqa: E731
    assert strip(known.text) == strip(unknown.text)
    assert worker.run_once() == 1  # one mail: the known address's
    assert [m["To"] for m in inbox.messages] == ["admin1@qadam.kz"]
    assert rows(database_url, "SELECT count(*) FROM password_resets") == [(1,)]


def test_asking_is_throttled_whether_or_not_the_account_exists(
    mail: tuple[TestClient, Inbox, Any, Clock], database_url: str
) -> None:
    c, inbox, worker, clock = mail
    for address in ("admin1@qadam.kz", "nobody@qadam.kz"):
        for _ in range(3):
            assert ask(c, address).status_code == 200
        refused = ask(c, address)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert "Too many requests" in refused.text and SENT not in refused.text
    assert worker.run_once() == 3  # the three asks of the known address, no more
    # a newer link revokes the older ones: only the last works
    assert rows(database_url, "SELECT count(*) FROM password_resets WHERE revoked_at IS NULL"
                " AND used_at IS NULL") == [(1,)]  # fmt: skip
    first = urlsplit(inbox.link(0)).path
    assert c.get(first).status_code == 410
    clock.now += 15 * 60 + 1  # the window ends
    assert ask(c, "admin1@qadam.kz").status_code == 200


def test_the_mail_is_in_the_account_language(
    mail: tuple[TestClient, Inbox, Any, Clock], database_url: str
) -> None:
    c, inbox, worker, _ = mail
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE users SET locale = 'kk' WHERE email = 'mum@qadam.kz'")
    assert ask(c, "mum@qadam.kz", "/app/ru/forgot").status_code == 200
    assert worker.run_once() == 1
    assert inbox.messages[0]["Subject"] == "qadam: жаңа құпиясөз орнату"
    assert "бір сағат" in inbox.body()
    link = inbox.link()
    assert link.endswith("?lang=kk")
    page = c.get(urlsplit(link).path + "?lang=kk")
    assert page.status_code == 200 and 'lang="kk"' in page.text
    assert 'href="/app/kk/manifest.webmanifest"' in page.text  # a guardian's: the app's look


def test_a_refused_address_is_a_dead_letter_and_a_down_server_is_retried(
    mail: tuple[TestClient, Inbox, Any, Clock], database_url: str
) -> None:
    c, inbox, worker, _ = mail
    inbox.refuse.add("admin1@qadam.kz")
    assert ask(c, "admin1@qadam.kz").status_code == 200
    assert worker.run_once() == 1
    assert inbox.messages == []
    dead = rows(database_url, "SELECT dead_at IS NOT NULL, last_error FROM outbox"
                " WHERE kind = 'email'")  # fmt: skip
    assert dead[0][0] is True and "550" in dead[0][1]
    assert rows(database_url, "SELECT body IS NULL FROM email_messages") == [(True,)]
    # a server that does not answer: retried, the body kept for the next attempt
    worker.handlers["email"].cfg = worker.handlers["email"].cfg.__class__(
        **{**worker.handlers["email"].cfg.__dict__, "port": 1}
    )
    assert ask(c, "cook1@qadam.kz").status_code == 200
    assert worker.run_once() == 1
    state = rows(database_url, "SELECT o.dead_at IS NULL, o.delivered_at IS NULL, m.body IS NULL"
                 " FROM outbox o JOIN email_messages m ON m.id = (o.payload->>'email_id')::bigint"
                 " WHERE m.to_addr = 'cook1@qadam.kz'")  # fmt: skip
    assert state == [(True, True, False)]


def test_without_smtp_the_pages_say_so_and_nothing_is_queued(
    client: TestClient, world: World, database_url: str
) -> None:
    page = client.get("/forgot")
    assert 'id="email-off"' in page.text and 'name="email"' not in page.text
    assert ask(client, "admin1@qadam.kz").status_code == 200
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    guardian = world.users["guardian"]
    sent = client.post(f"/guardians/{guardian}/invitation/email", data={"letter_lang": "ru"},
                       headers=SAME_ORIGIN)  # fmt: skip
    assert sent.status_code == 200 and 'id="email-off"' in sent.text
    assert rows(database_url, "SELECT count(*) FROM outbox WHERE kind = 'email'") == [(0,)]
    assert rows(database_url, "SELECT count(*) FROM password_resets") == [(0,)]
    assert rows(database_url, "SELECT count(*) FROM guardian_invitations") == [(0,)]


def test_invitation_by_email_is_the_letter_link_in_the_guardian_language(
    mail: tuple[TestClient, Inbox, Any, Clock], world: World, database_url: str
) -> None:
    c, inbox, worker, _ = mail
    assert sign_in(c, "admin1@qadam.kz", PASSWORD).status_code == 303
    guardian = world.users["guardian"]
    assert f'action="/guardians/{guardian}/invitation/email"' in c.get("/guardians").text
    sent = c.post(f"/guardians/{guardian}/invitation/email", data={"letter_lang": "ru"},
                  headers=SAME_ORIGIN)  # fmt: skip
    assert sent.status_code == 200 and "mum@qadam.kz" in sent.text
    assert worker.run_once() == 1
    msg = inbox.messages[0]
    assert msg["To"] == "mum@qadam.kz"
    assert msg["Subject"] == "qadam: приглашение в приложение для родителей"
    assert "School s1" in inbox.body()
    link = urlsplit(inbox.link())
    assert link.path.startswith("/app/invite/") and link.query == "lang=ru"
    assert c.get(f"{link.path}?{link.query}").status_code == 200
    # another school's admin cannot send one: "not found", nothing queued
    c.cookies.clear()
    assert sign_in(c, "admin3@qadam.kz", PASSWORD).status_code == 303
    other = c.post(f"/guardians/{guardian}/invitation/email", headers=SAME_ORIGIN)
    assert other.status_code == 404
    assert rows(database_url, "SELECT count(*) FROM email_messages") == [(1,)]


# ---- the app's page in Chromium at 390 px --------------------------------------------------
@pytest.fixture
def mail_site(database_url: str, world: World) -> Iterator[tuple[str, Inbox, Any]]:
    from email_smtp import free_port

    with smtp_server() as (inbox, smtp_port):
        port = free_port()
        settings = Settings(database_url=database_url, auth_required=True, http_port=port,
                            **mail_settings(smtp_port))  # fmt: skip
        srv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                            log_level="warning"))  # fmt: skip
        import threading
        import time

        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not srv.started:
            assert time.monotonic() < deadline, "web server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", inbox, mail_worker(database_url, settings)
        srv.should_exit = True
        thread.join(10)


def test_forgot_password_in_the_app_at_390(
    browser: Browser,  # noqa: F811
    mail_site: tuple[str, Inbox, Any],
) -> None:
    base, inbox, worker = mail_site
    tab = Tab(browser, base, PHONE, "en-US")
    p = tab.go("/app/en/login")
    p.get_by_role("link", name="Forgot password?").click()
    expect(p).to_have_url(f"{base}/app/en/forgot")
    p.get_by_label("E-mail").fill("mum@qadam.kz")
    p.get_by_label("E-mail").press("Enter")
    expect(p.locator("#forgot-sent")).to_contain_text("a link to set a new password")
    APP_SHOTS.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=str(APP_SHOTS / "forgot-390.png"))
    assert worker.run_once() == 1
    link = urlsplit(inbox.link())
    p = tab.go(f"{link.path}?{link.query}")
    expect(p.locator("h1")).to_have_text("Set a new password")
    p.get_by_label("New password (at least 10 characters)").fill("a new long password")
    p.get_by_label("New password again").fill("a new long password")
    p.screenshot(path=str(APP_SHOTS / "reset-390.png"))
    p.get_by_role("button", name="Save the new password").click()
    expect(p.locator("#reset-done")).to_be_visible()
    p.get_by_role("link", name="Sign in").click()
    expect(p).to_have_url(f"{base}/app/en/login")
    p.locator("#email").fill("mum@qadam.kz")
    p.locator("#password").fill("a new long password")
    p.locator("#password").press("Enter")
    expect(p).to_have_url(f"{base}/app/en/")
    tab.clean()


def test_smtp_settings_fail_fast(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="smtp_host needs smtp_from"):
        Settings(smtp_host="smtp.example.kz")
    with pytest.raises(ValueError, match="smtp_password_file"):
        Settings(smtp_host="smtp.example.kz", smtp_from="a@b.kz", smtp_user="a@b.kz",
                 smtp_password_file=str(tmp_path / "missing"))  # fmt: skip
    (tmp_path / "pw").write_text("s3cret\n")
    ok = Settings(smtp_host="smtp.example.kz", smtp_from="a@b.kz", smtp_user="a@b.kz",
                  smtp_password_file=str(tmp_path / "pw"))  # fmt: skip
    assert ok.email_ready and ok.smtp_password == "s3cret"
    assert not Settings().email_ready
