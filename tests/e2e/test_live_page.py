"""The console's live events page in real Chromium, behind sign-in, shows a tap made on a
virtual board as it arrives (it refreshes itself; no reload)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import psycopg
import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright

from cloud.api.app import create_app
from cloud.domain.users import create_user
from cloud.ingest.service import Ingest
from cloud.settings import Settings
from simulator.school import SimulatedSchool

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web(database_url, topic_prefix, mqtt_addr):
    settings = Settings(
        database_url=database_url,
        mqtt_host=mqtt_addr[0],
        mqtt_port=mqtt_addr[1],
        topic_prefix=topic_prefix,
        ingest_client_id=f"ingest-{topic_prefix}",
        http_port=_free_port(),
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
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "web server did not start"
        time.sleep(0.05)
    yield settings
    ingest.stop()
    server.should_exit = True
    thread.join(10)


def test_live_page_shows_taps_as_they_arrive(web, database_url, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is required for the web page tests (./dev test installs it)")
    school = SimulatedSchool(
        database_url,
        school="live",
        students=5,
        staff=0,
        boards=1,
        mqtt_host=web.mqtt_host,
        mqtt_port=web.mqtt_port,
        prefix=web.topic_prefix,
        state_dir=tmp_path / "boards",
    )
    try:
        school.start()
        with psycopg.connect(database_url) as conn:
            create_user(conn, "admin@live.test", "a live pass", "school_admin", school_id="live")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(locale="en-US")
            page.goto(f"http://127.0.0.1:{web.http_port}/live")
            page.locator("#email").fill("admin@live.test")
            page.locator("#password").fill("a live pass")
            page.locator("#password").press("Enter")
            expect(page).to_have_url(f"http://127.0.0.1:{web.http_port}/live")
            status = page.locator("#status")
            expect(status).to_have_text("0 events", timeout=10_000)

            pupil = school.people[0]
            school.boards[0].tap(pupil.uid)
            row = page.locator("#taps tr", has_text=pupil.name)
            expect(row).to_have_count(1, timeout=15_000)
            expect(row.locator("td.granted")).to_have_text("granted")

            school.boards[0].tap(school.strangers[0])
            stranger = page.locator("#taps tr", has_text="unknown card")
            expect(stranger).to_have_count(1, timeout=15_000)
            expect(stranger.locator("td.denied")).to_have_text("denied")
            expect(status).to_have_text("2 events")
            page.screenshot(path=str(tmp_path / "live.png"))
            browser.close()
    finally:
        school.stop()
