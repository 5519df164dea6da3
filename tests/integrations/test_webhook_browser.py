"""The Webhooks page in Debian's Chromium (Playwright), at 390 px and at desktop width: the
district admin allows a host for a school; the school admin is refused an http address, adds
an https one, sees its secret once, gets a new one and removes the webhook. Screenshots:
docs/screenshots/console/webhooks-*.png."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
import uvicorn
from api_world import World
from playwright.sync_api import Browser, expect
from test_console_browser import DESKTOP, PHONE, SHOTS, Tab
from test_console_browser import browser as browser  # noqa: F401 (the fixture)

from cloud.api.app import create_app
from cloud.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def site(database_url: str, world: World) -> Iterator[str]:
    """The web app on a loopback port."""
    settings = Settings(database_url=database_url, auth_required=True, http_port=_free_port())
    srv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                        port=settings.http_port, log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline, "web server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{settings.http_port}"
    srv.should_exit = True
    thread.join(10)


def _secret(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT secret FROM webhook_subscriptions").fetchone()
    assert row is not None
    return str(row[0])


def _full_shot(tab: Tab, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_hosts_by_the_district_then_a_webhook_added_rotated_and_removed_by_the_school(
    browser: Browser,  # noqa: F811
    site: str,
    database_url: str,
    viewport: dict[str, int],
    width: str,
) -> None:
    district = Tab(browser, site, viewport, "en-US")
    p = district.sign_in("d1@qadam.kz")
    p.goto(site + "/webhooks?school=s1")
    expect(p.locator("h1")).to_have_text("Webhooks")
    p.get_by_label("Host names webhooks may go to, one a line").fill("hooks.example.kz")
    p.get_by_role("button", name="Save the hosts").click()
    expect(p.get_by_label("Host names webhooks may go to, one a line")).to_have_value(
        "hooks.example.kz"
    )
    district.clean()

    tab = Tab(browser, site, viewport, "en-US")
    p = tab.sign_in("admin1@qadam.kz")
    p.goto(site + "/webhooks")
    expect(p.locator("#host-list")).to_contain_text("hooks.example.kz")
    expect(p.locator("#no-webhooks")).to_have_text("No webhook yet.")
    p.get_by_label("Address (https://…)").fill("http://hooks.example.kz/acs")
    p.get_by_label("Passages (entrance and exit)").check()
    p.get_by_role("button", name="Add", exact=True).click()
    expect(p.get_by_role("alert")).to_have_text("The address must start with https://.")
    expect(p.get_by_label("Address (https://…)")).to_have_value("http://hooks.example.kz/acs")

    p.get_by_label("Address (https://…)").fill("https://hooks.example.kz/acs")
    p.get_by_label("Meals received").check()
    p.get_by_role("button", name="Add", exact=True).click()
    expect(p.locator("#secret")).to_contain_text("Registered: https://hooks.example.kz/acs")
    shown = p.locator("#secret-value").inner_text()
    assert shown == _secret(database_url) and shown.startswith("whsec_")
    expect(p.locator("#webhook-list")).to_contain_text("Meals received")
    expect(p.locator("#webhook-list .deliveries")).to_contain_text("Delivered: 0")
    _full_shot(tab, f"webhooks-added-{width}")

    p.goto(site + "/webhooks")  # the secret is not shown again
    expect(p.locator("#secret")).to_have_count(0)
    assert shown not in p.content()

    p.get_by_role("button", name="New secret").click()
    expect(p.locator("#secret")).to_contain_text("New secret for https://hooks.example.kz/acs")
    rotated = p.locator("#secret-value").inner_text()
    assert rotated != shown and rotated == _secret(database_url)

    p.get_by_role("button", name="Remove").click()
    expect(p.locator("#no-webhooks")).to_have_text("No webhook yet.")
    tab.shot(f"webhooks-{width}")
    tab.clean()


def test_the_page_in_kazakh_and_russian(browser: Browser, site: str) -> None:  # noqa: F811
    for locale, title, add in (("kk-KZ", "Вебхуктар", "Вебхук қосу"),
                               ("ru-RU", "Вебхуки", "Добавить вебхук")):  # fmt: skip
        tab = Tab(browser, site, PHONE, locale)
        p = tab.sign_in("admin1@qadam.kz")
        p.goto(site + "/webhooks")
        expect(p.locator("h1")).to_have_text(title)
        expect(p.locator("#register-webhook h2")).to_have_text(add)
        tab.clean()
