"""Issue #15, must show: a person who has never seen the project signs in as a school admin in
Chromium and, with no curl, imports pupils, invites guardians, plans next week's menu, registers
and provisions a board, watches the morning's taps arrive, and approves the monthly meal report.

One browser session (Debian's Chromium, Playwright, 1280 px; the sign-in and the live page are
looked at again at 390 px) against the real parts: the API and the console under uvicorn on a
loopback port over the test's database, the ingest, the whitelist worker and the command pusher
on the shared Mosquitto (plain TCP on 127.0.0.1:1883 under the test's own topic prefix, the
broker open as in the demo: TLS and per-board accounts are what test_board_in_the_field.py
proves, and would only make this walk slower), and a board running the unchanged firmware in
the MicroPython VM, provisioned with the claim token read off the console's page through the
flasher's own code (tools/flashing/provision.py). Seeded: only what a fresh school has (the
school with its site key, its free meal category) and its administrator.

Each step asserts what the person sees and what PostgreSQL then holds. Screenshots:
docs/screenshots/console/walkthrough-<n>-<step>.png (docs/console.md, "Walk-through")."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from openpyxl import Workbook
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from cloud.api.app import create_app
from cloud.commands.menu import school_today
from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.domain.users import create_user
from cloud.imports import iin
from cloud.ingest.service import Ingest
from cloud.settings import Settings
from cloud.workers.command_push import CommandPush
from cloud.workers.whitelist_push import WhitelistPush
from simulator.board import BoardConfig, VirtualBoard
from tools import flash
from tools.flashing import provision

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]  # fmt: skip
SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots" / "console"
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}

SCHOOL, SCHOOL_NAME = "walk", "School No. 15"
SITE_KEY = b"walk-through-site-key-0123456789"
ADMIN, PASSWORD = "director@school15.kz", "a director's pass 15"
IIN_ARU = iin.make(date(2012, 5, 3), 11, female=True)
IIN_BEK = iin.make(date(2012, 8, 21), 12)
UID_ARU, UID_BEK = "04A1B2C3", "04B1B2C3"
PUPILS = [  # the columns a school's export has (docs/import.md), in Russian
    ["ФИО", "Класс", "ИИН", "Номер карты", "Категория питания"],
    ["Аманова Ару", "5А", IIN_ARU, UID_ARU, "бесплатное"],
    ["Беков Бек", "5А", IIN_BEK, UID_BEK, "бесплатное"],
]
GUARDIANS = f"ФИО;Email;ИИН ребенка\r\nАманова Гульнар;gulnar@mail.kz;{IIN_ARU}\r\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one(url: str, sql: str, *args: Any) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None, sql
    return tuple(row)


@pytest.fixture
def cloud(database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int]) -> Iterator[Settings]:
    """A fresh school (its meal categories: free, and paid at the price a free meal is
    accounted at: cloud/db/migrations/0007_reports.sql meal_price_at) and its admin; the API
    and console, the ingest, the whitelist worker (statuses in, lists out) and the command
    pusher, all on this test's topic prefix."""
    with psycopg.connect(database_url) as conn:
        registry.create_school(conn, SCHOOL, SCHOOL_NAME, SITE_KEY)
        conn.execute("INSERT INTO meal_categories (school_id, kind, name, price)"
                     " VALUES (%s, 'free', 'Free', 0), (%s, 'paid', 'Paid', 650)",
                     (SCHOOL, SCHOOL))  # fmt: skip
        create_user(conn, ADMIN, PASSWORD, "school_admin", school_id=SCHOOL)
    settings = Settings(
        database_url=database_url, auth_required=True, http_port=_free_port(),
        mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1], topic_prefix=topic_prefix,
        ingest_client_id=f"ingest-{topic_prefix}", ingest_flush_ms=20,
        whitelist_poll_ms=100, command_poll_ms=100,
    )  # fmt: skip
    srv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                        port=settings.http_port, log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    services: list[Ingest | WhitelistPush | CommandPush] = [
        Ingest(settings),
        WhitelistPush(settings),
        CommandPush(settings),
    ]
    for s in services:
        s.start()
    try:
        deadline = time.monotonic() + 20
        while not srv.started:
            assert time.monotonic() < deadline, "the web server did not start"
            time.sleep(0.05)
        assert all(s.wait_ready(15) for s in services), "a service did not subscribe"
        yield settings
    finally:
        for s in reversed(services):
            s.stop()
        srv.should_exit = True
        thread.join(10)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is required for the web page tests (./dev test installs it)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Session:
    """One person's browser context: console errors and requests leaving the machine are
    recorded (each fails the test)."""

    def __init__(self, browser: Browser, base: str, viewport: ViewportSize) -> None:
        self.base = base
        self.context = browser.new_context(viewport=viewport, locale="en-US")
        self.outside: list[str] = []
        self.context.route("**/*", self._only_loopback)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _only_loopback(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.base) or url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def sign_in(self) -> Page:
        p = self.page
        p.goto(self.base + "/login")
        expect(p.locator("h1")).to_have_text("Sign in")
        p.get_by_label("E-mail", exact=True).fill(ADMIN)
        p.get_by_label("Password", exact=True).fill(PASSWORD)
        p.get_by_label("Password", exact=True).press("Enter")
        expect(p).to_have_url(self.base + "/today")
        return p

    def menu(self, name: str) -> None:
        """A page reached as a person does: by its entry in the main menu."""
        self.page.get_by_role("navigation", name="Main").get_by_role(
            "link", name=name, exact=True
        ).click()

    def shot(self, n: int, step: str, full: bool = False) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"walkthrough-{n}-{step}.png"
        self.page.screenshot(path=str(path), full_page=full)

    def close(self) -> None:
        assert self.errors == [], self.errors
        assert self.outside == [], self.outside
        self.context.close()


def _import(s: Session, kind: str, path: Path, new: int) -> Page:
    """The wizard: pick what the file holds and the file, check it, read the summary, apply."""
    p = s.page
    expect(p.locator("h1")).to_have_text("Import pupils, staff or guardians")
    p.get_by_label("The file holds").select_option(kind)
    p.get_by_label("File (CSV or XLSX)").set_input_files(str(path))
    if kind == "students":  # 5A is new to a fresh school
        p.get_by_label("Create classes the school does not have yet").check()
    p.get_by_role("button", name="Check the file").click()
    expect(p.locator("#sum-new")).to_have_text(str(new))
    expect(p.locator("#check-errors")).to_have_count(0)
    return p


def _pupils_xlsx(tmp: Path) -> Path:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    for row in PUPILS:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    path = tmp / "5A-pupils.xlsx"
    path.write_bytes(buf.getvalue())
    return path


def _register(s: Session, device: str, mode: str, stands: str, place: str) -> str:
    """/fleet/new filled in by its labels; -> the claim token the page shows once."""
    p = s.page
    s.menu("Fleet")
    p.get_by_role("link", name="Register a board").click()
    p.get_by_label("Board id").fill(device)
    p.get_by_label("Mode").select_option(mode)
    p.get_by_label("Where it stands").select_option(stands)
    p.get_by_label("Place (optional)").fill(place)
    p.get_by_role("button", name="Register and make a claim token").click()
    expect(p.get_by_role("status")).to_have_text(f"Board {device} is registered.")
    expect(p.locator("figure.qr svg")).to_be_visible()
    expect(p.locator("#flash-command")).to_contain_text(f"--device {device}")
    return p.locator("#claim-token").inner_text().strip()


def _board(token: str, s: Session, device: str, mode: str, cloud: Settings,
           tmp: Path) -> VirtualBoard:  # fmt: skip
    """What `qadam flash --cloud URL --claim TOKEN --device ID` does with the cloud's answer,
    into the virtual board's flash: the exchange and the files by the flasher's own code. The
    template says the board's clock is set (the VM's clock is the host's; no NTP here) and, for
    the canteen, that it serves all day (any hour of a run is in a meal period)."""
    p = provision.provision(s.base, device, token)
    assert (p.device, p.school, p.mode) == (device, SCHOOL, mode)
    assert (p.host, p.port, p.prefix, p.tls) == (cloud.mqtt_host, cloud.mqtt_port,
                                                 cloud.topic_prefix, False)  # fmt: skip
    template: dict[str, Any] = {"clock_synced": True}
    if mode == "canteen":
        template["meal_periods"] = {"lunch": ["00:00", "24:00"]}
    files = provision.device_files(template, p)
    assert flash._check_device(Path("device.json"), json.loads(files["device.json"])) == []
    flash_dir = tmp / device
    flash_dir.mkdir()
    for name, data in files.items():
        (flash_dir / name).write_bytes(data)
    (flash_dir / "board.json").write_text(json.dumps({"hal": "sim"}))
    cfg = BoardConfig(device=device, school=SCHOOL, site_key=bytes.fromhex(p.site_key),
                      mqtt_host=p.host, mqtt_port=p.port, prefix=p.prefix)  # fmt: skip
    # a canteen does not fit the door's 64 KB heap (test_board_in_the_field.py, D16)
    return VirtualBoard(cfg, flash_dir, heap="100K" if mode == "canteen" else None)


def _online_with_cards(board: VirtualBoard) -> None:
    board.wait_for(lambda: board.mqtt_up, 30, "to connect to the broker")
    board.wait_for(lambda: board.stat()["wl"] >= 1, 30, "to install the school's card list")


def test_a_school_admin_walks_through_the_console(
    browser: Browser, cloud: Settings, database_url: str, tmp_path: Path
) -> None:
    db = database_url
    base = f"http://127.0.0.1:{cloud.http_port}"
    with psycopg.connect(db) as conn:
        today = school_today(conn, SCHOOL)
    monday = today + timedelta(days=7 - today.weekday())
    # a board's id is its MQTT client id: unique on the shared broker
    door, canteen = "door-" + cloud.topic_prefix[1:9], "canteen-" + cloud.topic_prefix[1:9]

    # 1. sign in (at 390 px first: the phone's sign-in takes the same steps)
    phone = Session(browser, base, PHONE)
    phone.sign_in()
    expect(phone.page.locator("h1")).to_have_text(f"Today: {SCHOOL_NAME}")
    phone.close()
    s = Session(browser, base, DESKTOP)
    p = s.sign_in()
    expect(p.locator("h1")).to_have_text(f"Today: {SCHOOL_NAME}")
    s.shot(1, "sign-in")
    assert _one(db, "SELECT count(*) FROM people WHERE school_id = %s", SCHOOL) == (0,)

    # 2. import the pupils (XLSX), then their guardians (CSV)
    s.menu("Import")
    _import(s, "students", _pupils_xlsx(tmp_path), 2)
    expect(p.locator("#sum-cards")).to_have_text("2")
    s.shot(2, "import-checked", full=True)
    p.get_by_role("button", name="Apply").click()
    expect(p).to_have_url(re.compile(r".*/import/\d+$"))
    expect(p.locator("#done-new")).to_have_text("2")
    with psycopg.connect(db) as conn:
        pupils = conn.execute(
            "SELECT p.full_name, c.name, mc.kind FROM people p JOIN classes c ON c.id = p.class_id"
            " JOIN meal_categories mc ON mc.school_id = p.school_id AND mc.code = p.meal_category"
            " WHERE p.school_id = %s AND p.kind = 'student' ORDER BY p.full_name", (SCHOOL,),
        ).fetchall()  # fmt: skip
        (aru_id,) = conn.execute("SELECT id FROM people WHERE external_id = %s",
                                 (IIN_ARU,)).fetchone() or (None,)  # fmt: skip
        cards = conn.execute("SELECT card_key FROM cards WHERE person_id = %s"
                             " AND revoked_at IS NULL", (aru_id,)).fetchall()  # fmt: skip
    assert pupils == [("Аманова Ару", "5А", "free"), ("Беков Бек", "5А", "free")], pupils
    assert cards == [(card_key(SITE_KEY, bytes.fromhex(UID_ARU)),)]
    (bek_id,) = _one(db, "SELECT id FROM people WHERE external_id = %s", IIN_BEK)
    p.get_by_role("link", name="Import another file").click()
    guardians = tmp_path / "5A-guardians.csv"
    guardians.write_bytes(GUARDIANS.encode("utf-8-sig"))
    _import(s, "guardians", guardians, 1)
    expect(p.locator("#sum-links")).to_have_text("1")
    p.get_by_role("button", name="Apply").click()
    expect(p.locator("#done-links")).to_have_text("1")
    s.shot(2, "import-done")
    assert _one(db, "SELECT count(*) FROM guardian_students gs JOIN users u ON u.id ="
                " gs.guardian_id WHERE u.email = 'gulnar@mail.kz' AND gs.person_id = %s",
                aru_id) == (1,)  # fmt: skip

    # 3. invite the guardian: a letter with a one-time link
    p.get_by_role("link", name="See the guardians").click()
    expect(p.locator("h1")).to_have_text("Guardians")
    row = p.locator("tr", has_text="gulnar@mail.kz")
    expect(row).to_contain_text("Аманова Ару")
    row.get_by_label("Language of the letter").select_option("ru")
    row.get_by_role("button", name="Make a letter").click()
    expect(p.locator("#invite-link")).to_be_visible()
    link = p.locator("#invite-link").inner_text()
    assert link.startswith(base + "/app/invite/") and link.endswith("?lang=ru"), link
    expect(p.locator(".qr svg")).to_be_visible()
    s.shot(3, "invitation-letter", full=True)
    assert _one(db, "SELECT count(*) FROM guardian_invitations i JOIN users u ON u.id ="
                " i.guardian_id WHERE u.email = 'gulnar@mail.kz' AND i.used_at IS NULL"
                " AND i.expires_at > now()") == (1,)  # fmt: skip

    # the letter is in Russian, its page too; back on the guardians page, the admin's English
    p.get_by_role("link", name="Назад к опекунам").click()
    expect(p.locator("h1")).to_have_text("Guardians")
    expect(p.locator("tr", has_text="gulnar@mail.kz")).to_contain_text("invited, until")

    # 4. next week's menu: a dish first, then next Monday's lunch
    s.menu("Menu")
    expect(p.locator("h1")).to_have_text("Menu")
    p.get_by_role("navigation", name="Menu pages").get_by_role("link", name="Dishes").click()
    p.get_by_label("Name in Kazakh").fill("Палау")
    p.get_by_label("Name in Russian").fill("Плов")
    p.get_by_label("Name in English (optional)").fill("Plov")
    p.get_by_label("Price, tenge").fill("650")
    p.get_by_role("button", name="Add the dish").click()
    expect(p.get_by_role("status")).to_have_text("The dish is added.")
    expect(p.locator("tr", has_text="Plov")).to_contain_text("650")
    (plov,) = _one(db, "SELECT id FROM dishes WHERE school_id = %s AND name_en = 'Plov'", SCHOOL)
    p.get_by_role("link", name="Week").click()
    p.get_by_role("link", name="Next week").click()
    day = p.locator(f'section[data-date="{monday.isoformat()}"]')
    expect(day).to_contain_text("Nothing planned.")
    day.get_by_role("link", name="Plan the day").click()
    lunch = p.locator('fieldset[data-period="lunch"]')
    lunch.get_by_label("Main dish").select_option(f"lunch:{plov}")
    s.shot(4, "menu-plan-monday")
    p.get_by_role("button", name="Save the day").click()
    expect(p.get_by_role("status")).to_contain_text("The day is saved.")
    day = p.locator(f'section[data-date="{monday.isoformat()}"]')
    expect(day.locator('div.set[data-period="lunch"]')).to_contain_text("Plov")
    s.shot(4, "menu-next-week")
    assert _one(db, "SELECT dish_ids FROM menus WHERE school_id = %s AND day = %s"
                " AND period = 'lunch'", SCHOOL, monday) == ([plov],)  # fmt: skip

    # 5. register the entrance's board and the canteen's; the claim tokens off the page
    #    provision them through the flasher's code
    boards: list[VirtualBoard] = []
    where = (door, "door", "in", "main entrance"), (canteen, "canteen", "both", "canteen counter")
    for device, mode, stands, place in where:
        token = _register(s, device, mode, stands, place)
        if mode == "door":
            s.shot(5, "board-registered", full=True)
        boards.append(_board(token, s, device, mode, cloud, tmp_path))
        assert _one(db, "SELECT mqtt_username, revoked_at FROM device_credentials"
                    " WHERE device_id = %s", device) == (f"board.{device}", None)  # fmt: skip
        assert _one(db, "SELECT count(*) FROM device_claim_tokens WHERE device_id = %s"
                    " AND used_at IS NULL", device) == (0,)  # fmt: skip
    at_door, at_counter = boards
    try:
        for board in boards:
            board.start()
        for board in boards:
            _online_with_cards(board)
        p.get_by_role("link", name="Open the board's page").click()
        expect(p.locator("#board-state")).to_contain_text("online", timeout=20_000)
        # the canteen board got next Monday's planned lunch from the command pusher
        menu_cmd = p.locator("#commands tbody tr", has_text=monday.isoformat())
        expect(menu_cmd).to_contain_text("done", timeout=20_000)
        expect(menu_cmd).to_contain_text("Plov")
        s.shot(5, "board-online", full=True)
        (days,) = _one(db, "SELECT args -> 'set' -> 'menu' -> 'days' FROM device_commands"
                       " WHERE device_id = %s AND purpose = 'menu' AND state = 'ok'"
                       " ORDER BY id DESC LIMIT 1", canteen)  # fmt: skip
        assert days[monday.isoformat()]["lunch"][0] == plov, days
        s.menu("Fleet")
        for device in (door, canteen):
            expect(p.locator(f"#board-{device}")).to_contain_text("online", timeout=20_000)

        # 6. the morning's taps arrive on the live page, without a reload: both pupils come in,
        #    Aru has her free lunch
        s.menu("Live events")
        expect(p.locator("#status")).to_have_text("0 events")
        watcher = Session(browser, base, PHONE)  # the same page on a phone, also left open
        watcher.sign_in()
        watcher.page.goto(base + "/live")
        for board, uid, reader, reason in ((at_door, UID_ARU, "in", "ok"),
                                           (at_door, UID_BEK, "in", "ok"),
                                           (at_counter, UID_ARU, "canteen", "free")):  # fmt: skip
            tap = board.tap(bytes.fromhex(uid), reader)
            assert tap is not None and (tap["result"], tap["reason"]) == ("granted", reason), tap
        for page in (p, watcher.page):
            expect(page.locator("#taps tr", has_text="Аманова Ару")).to_have_count(
                2, timeout=20_000
            )
            expect(page.locator("#taps tr", has_text="Беков Бек")).to_have_count(1)
        meal = p.locator("#taps tr", has_text="free meal")
        expect(meal).to_contain_text("Аманова Ару")
        expect(meal).to_contain_text(canteen)
        expect(p.locator("#status")).to_have_text("3 events")
        s.shot(6, "live-taps")
        SHOTS.mkdir(parents=True, exist_ok=True)
        watcher.page.screenshot(path=str(SHOTS / "walkthrough-6-live-taps-390.png"), full_page=True)
        watcher.close()
        for board in boards:
            board.wait_drained(20)
    finally:
        for board in boards:
            board.stop()
    with psycopg.connect(db) as conn:
        stored = conn.execute(
            "SELECT device_id, person_id, result, reason FROM events WHERE school_id = %s"
            " ORDER BY device_id DESC, person_id", (SCHOOL,)).fetchall()  # fmt: skip
        receipts = conn.execute("SELECT person_id FROM meal_receipts WHERE school_id = %s",
                                (SCHOOL,)).fetchall()  # fmt: skip
    assert stored == [(door, aru_id, "granted", "ok"), (door, bek_id, "granted", "ok"),
                      (canteen, aru_id, "granted", "free")], stored  # fmt: skip
    assert receipts == [(aru_id,)]

    # 7. the month's meal report: generate, acknowledge each anomaly, approve
    month = f"{today:%Y-%m}"
    s.menu("Reports")
    p.get_by_label("Month").fill(month)
    p.get_by_role("button", name="Show").click()
    p.get_by_role("button", name="Generate").click()
    expect(p.locator("#report-status")).to_contain_text("draft, not approved")
    aru_line = p.locator("#preview-lines tr", has_text="Аманова Ару")
    expect(aru_line).to_contain_text("650.00")  # one free lunch, at the paid price
    expect(p.get_by_text("could not be priced")).to_have_count(0)
    # the cross-check: Bek came in on a canteen day and had no free meal
    expect(p.locator("#anomaly-list tbody tr")).to_have_count(1)
    expect(p.locator("#anomaly-list tbody tr")).to_contain_text("Беков Бек")
    expect(p.locator("#open-count")).to_have_text(
        "1 anomaly of the cross-check is not acknowledged yet."
    )
    s.shot(7, "report-draft", full=True)
    p.get_by_role("button", name=f"Acknowledge: Беков Бек, {today.isoformat()}").click()
    expect(p.locator("#open-count")).to_have_text(
        "0 anomalies of the cross-check are not acknowledged yet."
    )
    expect(p.locator("#anomaly-list")).to_contain_text(f"by {ADMIN}")
    assert _one(db, "SELECT check_kind, person_id, day FROM report_anomaly_acks"
                " WHERE school_id = %s", SCHOOL) == ("present_not_fed", bek_id, today)  # fmt: skip
    p.get_by_role("button", name="Approve").click()
    expect(p.locator("#report-status")).to_contain_text("approved")
    expect(p.locator("#report-status")).to_contain_text(f"by {ADMIN}")
    expect(p.get_by_role("button", name="Approve")).to_have_count(0)
    s.shot(7, "report-approved", full=True)
    assert _one(db, "SELECT status, approved_by IS NOT NULL FROM reports WHERE school_id = %s"
                " AND month = %s AND kind = 'meals'", SCHOOL, today.replace(day=1)
                ) == ("approved", True)  # fmt: skip
    s.close()
