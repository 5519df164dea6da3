"""The parents' app end to end (issue #16 first slice, D27-F), in Debian's Chromium at 390 px:
a school admin makes an invitation letter on the console's guardians page; the guardian, whose
account was imported without a password, opens the letter's link, sets a password and is
signed in and turns notifications on; a tap on a virtual board (MicroPython VM, broker,
ingest) appears in the child's feed in Kazakh with its date and time in the school's zone,
without a reload, and its push (outbox worker, VAPID, RFC 8291 encryption) reaches the fake push
service, which decrypts it; delivered to the phone's service worker (CDP), it is shown as a
notification; the guardian switches to Russian and English; another child is "not found"; the
used link is refused. The screenshots of every app page in kk, ru and en go to
docs/screenshots/app/ (docs/app.md)."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
import uvicorn
from openpyxl import Workbook
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cloud.api.app import create_app
from cloud.domain.users import create_user
from cloud.ingest.service import Ingest
from cloud.push.webpush import VapidKey
from cloud.settings import Settings
from cloud.workers.outbox import OutboxWorker, build_handlers
from simulator.school import SimulatedSchool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cloud"))
from fake_push import FakePushService  # noqa: E402 (tests/cloud: decrypts like a browser)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots" / "app"
SCHOOL = "app-school"
ADMIN = ("admin@app.test", "an admin pass")
NEW_PASSWORD = "mum's new password"
CHILD_IIN = "150101600127"  # born 2015-01-01, a girl; its check digit is right


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def push_service():
    with FakePushService() as svc:
        yield svc


@pytest.fixture
def web(database_url, topic_prefix, mqtt_addr, tmp_path):
    """The API (and the app), the ingest and the outbox worker that sends the pushes, with a
    VAPID key; push endpoints on loopback allowed (the fake push service)."""
    (tmp_path / "vapid.pem").write_bytes(VapidKey.generate_pem())
    settings = Settings(
        database_url=database_url,
        mqtt_host=mqtt_addr[0],
        mqtt_port=mqtt_addr[1],
        topic_prefix=topic_prefix,
        ingest_client_id=f"ingest-{topic_prefix}",
        http_port=_free_port(),
        auth_required=True,
        push_vapid_key_file=str(tmp_path / "vapid.pem"),
        push_vapid_subject="mailto:t@app.test",
        push_allow_http_loopback=True,
        push_timeout_s=5,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.http_port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    ingest = Ingest(settings)
    ingest.start()
    outbox = OutboxWorker(
        database_url,
        build_handlers(settings),
        poll_s=0.2,
        lease_s=30,
        backoff_base_s=0.1,
        backoff_max_s=1,
    )
    outbox.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "web server did not start"
        time.sleep(0.05)
    yield settings
    outbox.stop()
    ingest.stop()
    server.should_exit = True
    thread.join(10)


class Phone:
    """A 390 px browser context that records console errors (the expected 404/410 page loads
    of refused links are listed by the test)."""

    def __init__(self, browser: Browser, base: str, locale: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport=PHONE, locale=locale)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def go(self, path: str) -> Page:
        self.page.goto(path if path.startswith("http") else self.base + path)
        return self.page

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}-390.png"), full_page=True)

    def done(self, *expected_status: int) -> None:
        allowed = [f"status of {s}" for s in expected_status]
        assert [e for e in self.errors if not any(a in e for a in allowed)] == []
        self.context.close()


def _person_id(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute(
        "SELECT id FROM people WHERE school_id = %s AND full_name = %s", (SCHOOL, name)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _make_letter(admin: Phone, who: str, lang: str) -> str:
    p = admin.go("/guardians")
    row = p.locator("tr", has_text=who)
    row.locator("select").select_option(lang)
    row.locator("button.primary").click()  # "Make a letter" (the other sends it by e-mail)
    expect(p.locator("#invite-link")).to_be_visible()
    return p.locator("#invite-link").inner_text()


def test_guardian_signs_in_from_the_letter_and_sees_the_tap(
    web, database_url, tmp_path, push_service
):
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is required for the web page tests (./dev test installs it)")
    school = SimulatedSchool(
        database_url,
        school=SCHOOL,
        name="Школа № 7",
        students=3,
        staff=0,
        boards=2,
        mqtt_host=web.mqtt_host,
        mqtt_port=web.mqtt_port,
        prefix=web.topic_prefix,
        state_dir=tmp_path / "boards",
    )
    base = f"http://127.0.0.1:{web.http_port}"
    try:
        school.start()
        child, other = school.people[0], school.people[1]
        with psycopg.connect(database_url) as conn:
            create_user(conn, *ADMIN, "school_admin", school_id=SCHOOL)
            child_id, other_id = _person_id(conn, child.name), _person_id(conn, other.name)
        _import_guardians(base, child_id, tmp_path)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            phone = push_service.browser(_server_key(web))
            _walk(browser, base, school, child, child_id, other_id, database_url, phone)
            browser.close()
    finally:
        school.stop()


def _import_guardians(base: str, child_id: int, tmp: Path) -> None:
    """The school's secretary enters the child's IIN, then imports the class's guardians from
    an XLSX file through the import API: checked first (nothing changes), then applied. The
    accounts it creates have no password until the invitation (docs/import.md)."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["ФИО", "Email", "ИИН ребенка"])
    sheet.append(["Айгүл Сейітова", "mum@app.test", CHILD_IIN])
    sheet.append(["Ерлан С.", "dad@app.test", CHILD_IIN])
    xlsx = tmp / "guardians.xlsx"
    book.save(xlsx)
    with httpx.Client(base_url=base, timeout=30) as api:
        r = api.post("/api/v1/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]})
        assert r.status_code == 200, r.text
        h = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = api.patch(f"/api/v1/people/{child_id}", headers=h, json={"external_id": CHILD_IIN})
        assert r.status_code == 200, r.text
        url = f"/api/v1/schools/{SCHOOL}/import"
        for dry_run in ("true", "false"):
            with xlsx.open("rb") as f:
                files = {"file": ("guardians.xlsx", f, "application/octet-stream")}
                r = api.post(url, headers=h, files=files,
                             params={"kind": "guardians", "dry_run": dry_run})  # fmt: skip
            assert r.status_code == 200, r.text
            report = r.json()
            assert (report["errors"], report["format"]) == ([], "xlsx"), report
            assert report["would_create"] == {"guardians": 2, "links": 2}, report
            assert report["applied"] == (dry_run == "false")
        assert sorted(report["invites_needed"]) == ["dad@app.test", "mum@app.test"]


def _server_key(settings: Settings) -> str:
    pem = Path(settings.push_vapid_key_file).read_bytes()
    return VapidKey(pem, settings.push_vapid_subject).application_server_key


# The phone's PushManager.subscribe (it fails in headless Chromium: research/ui.md pitfall 4)
# answers the fake push service's subscription, whose keys that service decrypts with.
SUBSCRIBE_STUB = """
const sub = %s;
const fake = { endpoint: sub.endpoint, toJSON() { return sub; } };
PushManager.prototype.subscribe = async function () {
  sessionStorage.setItem("stub-subscribed", "1");
  return fake;
};
PushManager.prototype.getSubscription = async function () {
  return sessionStorage.getItem("stub-subscribed") ? fake : null;
};
"""


def _deliver(page: Page, base: str, payload: dict) -> list[dict]:
    """The push service's message into the page's service worker (CDP), then the
    notifications it shows."""
    cdp = page.context.new_cdp_session(page)
    regs: list[str] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: regs.extend(
            r["registrationId"] for r in e["registrations"] if r["scopeURL"] == base + "/app/"
        ),
    )
    cdp.send("ServiceWorker.enable")
    for _ in range(100):
        if regs:
            break
        page.wait_for_timeout(100)
    assert regs, "no service worker for /app/"
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": base, "registrationId": regs[0], "data": json.dumps(payload)},
    )
    for _ in range(100):
        shown = page.evaluate(
            "navigator.serviceWorker.ready.then(r => r.getNotifications())"
            ".then(ns => ns.map(n => ({title: n.title, body: n.body})))"
        )
        if shown:
            return shown
        page.wait_for_timeout(100)
    return []


def _walk(browser, base, school, child, child_id, other_id, database_url, phone) -> None:
    # 1. the school admin makes mum's letter in Kazakh on the console
    admin = Phone(browser, base, "en-US")
    p = admin.go("/login")
    p.locator("#email").fill(ADMIN[0])
    p.locator("#password").fill(ADMIN[1])
    p.locator("#password").press("Enter")
    p = admin.go("/guardians")
    expect(p.locator("h1")).to_have_text("Guardians")
    expect(p.locator("tr", has_text="mum@app.test")).to_contain_text("not invited yet")
    admin.shot("guardians-en")
    link = _make_letter(admin, "mum@app.test", "kk")
    expect(admin.page.locator("h1")).to_have_text("qadam қосымшасына шақыру")
    expect(admin.page.locator(".qr svg")).to_be_visible()
    admin.shot("letter-kk")
    assert link.startswith(base + "/app/invite/") and link.endswith("?lang=kk")

    # 2. mum opens it on her phone, sets a password, and is signed in to the app in Kazakh
    mum = Phone(browser, base, "kk-KZ")
    mum.context.grant_permissions(["notifications"], origin=base)
    sub = {k: v for k, v in phone.subscription_json().items() if k != "lang"}
    mum.context.add_init_script(SUBSCRIBE_STUB % json.dumps(sub))
    p = mum.go(link)
    expect(p.locator("h1")).to_have_text("Құпиясөзіңізді орнатыңыз")
    p.get_by_label("Жаңа құпиясөз (кемінде 10 таңба)").fill(NEW_PASSWORD)
    p.get_by_label("Жаңа құпиясөз қайтадан").fill(NEW_PASSWORD)
    p.get_by_role("button", name="Сақтау және кіру").click()
    expect(p).to_have_url(base + "/app/kk/")
    expect(p.locator("#child-name")).to_have_text(child.name)
    expect(p.locator(".feed")).to_contain_text("Әзірге ештеңе жоқ.")
    # she turns notifications on: the subscription is stored for her, in Kazakh
    p.get_by_role("button", name="Хабарламаларды қосу").click()
    expect(p.locator("#push-state")).to_have_text("Бұл телефонда хабарламалар қосулы.")

    # 3. the child taps in and out on the school's boards: the feed shows both, no reload
    assert school.boards[0].tap(child.uid)["result"] == "granted"
    time.sleep(1.5)  # the board's debounce of the same card
    assert school.boards[1].tap(child.uid)["result"] == "granted"
    items = p.locator(".feed li")
    expect(items).to_have_count(2, timeout=30_000)
    expect(items.nth(0)).to_contain_text("Кетті")  # newest first
    expect(items.nth(1)).to_contain_text("Келді")
    with psycopg.connect(database_url) as conn:
        at = conn.execute(
            "SELECT coalesce(occurred_at_corrected, occurred_at), s.timezone FROM events e"
            " JOIN schools s ON s.id = e.school_id WHERE e.person_id = %s AND e.reader = 'in'",
            (child_id,),
        ).fetchone()
    local = at[0].astimezone(ZoneInfo(at[1]))
    expect(items.nth(1).locator("time")).to_contain_text(f"{local.year}, {local:%H:%M}")
    mum.shot("feed-kk")
    # the arrival's push: stored -> outbox -> encrypted POST -> decrypted by the push service
    # (RFC 8291) -> delivered to her phone's service worker, which shows it
    for _ in range(150):
        if len(phone.received) >= 2:
            break
        p.wait_for_timeout(100)
    assert len(phone.received) == 2, phone.received
    by_reader = {m["reader"]: m["body"] for m in phone.received}
    assert by_reader["in"] == f"{child.name} мектепке келді, {local:%d.%m.%Y, %H:%M}"
    assert by_reader["out"].startswith(f"{child.name} мектептен шықты, {local:%d.%m.%Y}, ")
    arrival = next(m for m in phone.received if m["reader"] == "in")
    shown = _deliver(p, base, arrival)
    assert shown == [{"title": arrival["title"], "body": arrival["body"]}]

    # 4. Russian, then English: the same child's feed
    on = {
        "ru": "Уведомления на этом телефоне включены.",
        "en": "Notifications are on for this phone.",
    }
    for lang, to, arrived in (("ru", "Русский", "Пришёл"), ("en", "English", "Arrived")):
        p.get_by_label(re.compile("Тіл|Язык|Language")).select_option(label=to)
        p.get_by_role("button", name=re.compile("Тілді|Сменить|Change")).click()
        expect(p).to_have_url(f"{base}/app/{lang}/?child={child_id}")
        expect(p.locator(".feed li").nth(1)).to_contain_text(arrived)
        expect(p.locator("#push-state")).to_have_text(on[lang])
        mum.shot(f"feed-{lang}")

    # 5. another child of the school: not found; the used link: refused, nothing changed
    p = mum.go(f"/app/en/?child={other_id}")
    expect(p.locator("h1")).to_have_text("Not found")
    expect(p.locator("main")).not_to_contain_text(school.people[1].name)
    mum.shot("not-found-en")
    for lang, words in (
        ("kk", "бұрын пайдаланылған"),
        ("ru", "уже использована"),
        ("en", "already been used"),
    ):
        p = mum.go(link.replace("?lang=kk", f"?lang={lang}"))
        expect(p.locator("#invite-problem")).to_contain_text(words)
        mum.shot(f"invite-used-{lang}")
    p = mum.go("/app/en/")
    expect(p.locator("#child-name")).to_have_text(child.name)  # still signed in, same account
    mum.done(404, 410)

    # 6. the API's route makes dad's link; the console makes his letters in ru and en
    token = httpx.post(
        base + "/api/v1/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]}
    ).json()["access_token"]
    with psycopg.connect(database_url) as conn:
        dad = conn.execute("SELECT id FROM users WHERE email = 'dad@app.test'").fetchone()[0]
    r = httpx.post(
        f"{base}/api/v1/guardians/{dad}/invitations", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 201 and r.json()["url"].startswith(base + "/app/invite/")
    for lang in ("ru", "en"):
        dad_link = _make_letter(admin, "dad@app.test", lang)
        admin.shot(f"letter-{lang}")
    admin.done()

    # 7. every app page in the three languages (a fresh phone, not signed in)
    dad_phone = Phone(browser, base, "ru-RU")
    assert httpx.get(r.json()["url"]).status_code == 410  # replaced by the letters
    for lang in ("kk", "ru", "en"):
        dad_phone.go(dad_link.replace("?lang=en", f"?lang={lang}"))
        expect(dad_phone.page.locator("form.stack")).to_be_visible()
        dad_phone.shot(f"invite-{lang}")
        dad_phone.go(f"/app/{lang}/login")
        dad_phone.shot(f"sign-in-{lang}")
        dad_phone.go(f"/app/{lang}/offline")
        dad_phone.shot(f"offline-{lang}")
    dad_phone.done()
