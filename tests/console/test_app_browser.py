"""The parents' app's service worker in Debian's Chromium (Playwright, 390 px; D27-F): the app
turns notifications on through the worker with the server's VAPID key (headless Chromium's
``pushManager.subscribe`` fails, so it is stubbed: research/ui.md pitfall 4) and the
subscription is stored for the guardian; a push delivered to the worker with CDP
``ServiceWorker.deliverPushMessage`` shows the cloud's notification text, and its click target
takes the open app to that child; the feed's last page is readable offline, and a page never
opened gives the offline page. The invitation flow with a real board is
tests/e2e/test_app_invitation.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from api_world import PASSWORD, World
from playwright.sync_api import Browser, Page, expect
from test_console_browser import PHONE, browser  # noqa: F401 (the Chromium fixture)

from cloud.api.app import create_app
from cloud.push.texts import render as push_text
from cloud.push.webpush import VapidKey
from cloud.settings import Settings

ENDPOINT = "https://fcm.googleapis.com/fcm/send/browser-test"
# the URLs the service worker keeps, in every cache
KEPT = (
    "caches.keys().then(ns => Promise.all(ns.map(n => caches.open(n).then(c => c.keys()))))"
    ".then(ks => ks.flat().map(r => r.url))"
)
# PushManager.subscribe stubbed (it fails headless): records the key it was given and answers a
# subscription whose keys are a real P-256 point and a 16-byte secret.
STUB = """
(() => {
  if (!self.PushManager) return;
  const fake = { endpoint: "%s", toJSON() { return {
    endpoint: this.endpoint, expirationTime: null,
    keys: { p256dh: "%s", auth: "MDEyMzQ1Njc4OWFiY2RlZg" } }; } };
  PushManager.prototype.subscribe = async function (options) {
    window.__serverKey = Array.from(new Uint8Array(options.applicationServerKey));
    sessionStorage.setItem("stub-subscribed", "1");
    return fake;
  };
  PushManager.prototype.getSubscription = async function () {
    return sessionStorage.getItem("stub-subscribed") ? fake : null;
  };
})();
"""


@pytest.fixture
def push_site(database_url: str, world: World, tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """The app with a VAPID key, on a loopback port: its base URL and the key's public point."""
    pem = VapidKey.generate_pem()
    (tmp_path / "vapid.pem").write_bytes(pem)
    port = _free_port()
    settings = Settings(
        database_url=database_url,
        auth_required=True,
        http_port=port,
        push_vapid_key_file=str(tmp_path / "vapid.pem"),
        push_vapid_subject="mailto:ops@qadam.kz",
    )
    srv = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline, "web server did not start"
        time.sleep(0.05)
    import base64

    key = VapidKey(pem, "mailto:ops@qadam.kz").application_server_key
    yield f"http://127.0.0.1:{port}", base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    srv.should_exit = True
    thread.join(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _p256dh() -> str:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


def _wait(page: Page, fn: Any, what: str, timeout: float = 10.0) -> Any:
    """Polls ``fn``; Playwright's own wait, so CDP events keep arriving meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, what
        page.wait_for_timeout(100)


def test_push_through_the_service_worker_and_the_offline_feed(
    browser: Browser,  # noqa: F811
    push_site: tuple[str, bytes],
    world: World,
    database_url: str,
) -> None:
    base, server_key = push_site
    context = browser.new_context(viewport=PHONE, locale="en-US")
    context.grant_permissions(["notifications"], origin=base)
    context.add_init_script(STUB % (ENDPOINT, _p256dh()))
    page: Page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(base + "/app/en/login")
    page.locator("#email").fill("mum@qadam.kz")
    page.locator("#password").fill(PASSWORD)
    page.locator("#password").press("Enter")
    expect(page).to_have_url(base + "/app/en/")
    expect(page.locator("#child-name")).to_have_text("Alice Aliyeva")
    # the worker takes the page over (clients.claim) once installed
    _wait(page, lambda: page.evaluate("!!navigator.serviceWorker.controller"), "no service worker")

    page.get_by_role("button", name="Turn on notifications").click()
    expect(page.locator("#push-state")).to_have_text("Notifications are on for this phone.")
    assert bytes(page.evaluate("window.__serverKey")) == server_key  # the server's VAPID key
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT u.email, p.endpoint, p.lang FROM push_subscriptions p"
            " JOIN users u ON u.id = p.user_id"
        ).fetchall()
    assert rows == [("mum@qadam.kz", ENDPOINT, "en")]
    # the next visit says notifications are on instead of offering the button again
    page.reload()
    expect(page.locator("#push-state")).to_have_text("Notifications are on for this phone.")
    expect(page.get_by_role("button", name="Turn on notifications")).to_be_hidden()

    # a push delivered to the worker: the cloud's own text for a tap (cloud/push/texts.py)
    alice = world.ids["alice"]
    payload = push_text(
        "parent_notification",
        "en",
        {
            "person_id": alice,
            "name": "Alice Aliyeva",
            "reader": "in",
            "date": "2026-12-07",
            "time": "08:12",
        },
    )
    cdp = context.new_cdp_session(page)
    registrations: list[str] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(
            r["registrationId"] for r in e["registrations"] if r["scopeURL"] == base + "/app/"
        ),
    )
    cdp.send("ServiceWorker.enable")
    _wait(page, lambda: registrations, "no service worker registration for /app/")
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": base, "registrationId": registrations[0], "data": json.dumps(payload)},
    )
    shown = _wait(
        page,
        lambda: page.evaluate(
            "navigator.serviceWorker.ready.then(r => r.getNotifications())"
            ".then(ns => ns.map(n => ({title: n.title, body: n.body, data: n.data})))"
        ),
        "no notification shown",
    )
    assert shown == [
        {
            "title": payload["title"],
            "body": payload["body"],
            "data": {"url": f"/app/?child={alice}"},
        }
    ]
    assert "Alice Aliyeva" in shown[0]["body"] and "08:12" in shown[0]["body"]

    # its click: the open app goes to that child's feed (headless Chromium cannot click a
    # notification, so the worker's handler function is called in the worker)
    page.goto(base + "/app/en/?child=999999")  # not theirs: "not found"
    expect(page.locator("h1")).to_have_text("Not found")
    worker = context.service_workers[0]
    target = json.dumps(f"/app/?child={alice}")
    worker.evaluate(f"openTarget({target}).catch(e => String(e))")
    expect(page).to_have_url(f"{base}/app/en/?child={alice}")
    expect(page.locator("#child-name")).to_have_text("Alice Aliyeva")

    # offline: the feed's last page is still readable; a page never opened says "offline"
    context.set_offline(True)
    page.reload()
    expect(page.locator("#child-name")).to_have_text("Alice Aliyeva")
    expect(page.locator(".feed li").first).to_contain_text("Arrived")
    page.goto(base + "/app/en/?child=123")
    expect(page.locator("h1")).to_have_text("Offline")
    context.set_offline(False)
    # an invitation's page, opened under the worker, is not kept (its URL holds the token)
    import hashlib
    import secrets

    invite = secrets.token_urlsafe(32)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO guardian_invitations (token_hash, guardian_id, expires_at)"
            " VALUES (%s, %s, now() + interval '1 day')",
            (hashlib.sha256(invite.encode()).digest(), world.ids["guardian_id"]),
        )
    page.goto(f"{base}/app/invite/{invite}?lang=en")
    expect(page.locator("h1")).to_have_text("Set your password")
    kept = page.evaluate(KEPT)
    assert f"{base}/app/en/?child={alice}" in kept
    assert not [u for u in kept if "/app/invite/" in u]
    # signing out drops the kept feed (Clear-Site-Data): the children's names go with it
    page.goto(f"{base}/app/en/?child={alice}")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{base}/app/en/login")
    page.wait_for_timeout(500)
    kept = page.evaluate(KEPT)
    assert not [u for u in kept if "child=" in u or u.endswith("/app/en/")], kept
    expected = [e for e in errors if "404" in e or "ERR_INTERNET_DISCONNECTED" in e]
    assert [e for e in errors if e not in expected] == []
    context.close()


def test_the_app_is_installable(server: str, tmp_path: Path) -> None:
    """Chromium's own installability check (manifest, icons, service worker) finds nothing to
    object to on the app's sign-in page (``Page.getInstallabilityErrors`` needs a persistent
    context: research/ui.md pitfall 4)."""
    from playwright.sync_api import sync_playwright
    from test_console_browser import ARGS, CHROMIUM

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=ARGS, viewport=PHONE
        )
        page = context.new_page()
        page.goto(server + "/app/en/login")
        _wait(page, lambda: page.evaluate("!!navigator.serviceWorker.controller"), "no worker")
        cdp = context.new_cdp_session(page)
        got = cdp.send("Page.getInstallabilityErrors")
        manifest = cdp.send("Page.getAppManifest")
        context.close()
    assert manifest["errors"] == [], manifest["errors"]
    assert got["installabilityErrors"] == [], got
