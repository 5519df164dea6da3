"""The student's way in and app in Debian's Chromium (Playwright; issue #16 "For a student",
D28-O), used as a school and a pupil would: the school admin prints Amir a sign-in code slip
from his person page (desktop); Amir, on a 390 px phone in Kazakh, follows "sign in with a
code" from the app's sign-in page, types the code and a new password with the keyboard, lands on
his own feed (no child switcher, no settings tab) and opens the Learning tab. Screenshots:
docs/screenshots/app/app-student-{feed,learning}-kk-390.png and
docs/screenshots/console/student-slip-desktop.png."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from api_world import World
from playwright.sync_api import Browser, expect
from test_console_browser import DESKTOP, PHONE, Tab, browser  # noqa: F401 (the fixture)

APP_SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots" / "app"
CONSOLE_SHOTS = APP_SHOTS.parent / "console"
NEW_PASSWORD = "Amirdin kupiyasozi 7"


@pytest.fixture
def site(server: str, world: World, database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO learning_resources (school_id, position, title, url) VALUES"
            " ('s1', 0, 'Bilimland', 'https://bilimland.kz/'),"
            " ('s1', 1, 'Daryn Online', 'https://daryn.online/')"
        )
    return server


def _shot(tab: Tab, name: str, where: Path) -> None:
    width = tab.page.viewport_size["width"]  # type: ignore[index]
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= width, name
    where.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(where / f"{name}.png"), full_page=True)


def test_slip_code_sign_in_feed_and_learning_on_a_phone_in_kk(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    site: str,
    world: World,
) -> None:
    admin = Tab(browser, site, DESKTOP, "en-US")
    p = admin.sign_in("admin1@qadam.kz")
    p = admin.go(f"/people/{world.ids['amir']}")
    p.locator("#student-code").click()
    expect(p.locator("#slip-login")).to_have_text(f"{world.ids['amir']}@s1.pupil")
    code = p.locator("#slip-code").inner_text()
    _shot(admin, "student-slip-desktop", CONSOLE_SHOTS)
    admin.clean()

    tab = Tab(browser, site, PHONE, "kk-KZ")
    p = tab.go("/app/kk/login")
    p.locator("#code-link").click()
    expect(p).to_have_url(f"{site}/app/kk/code")
    expect(p.locator("h1")).to_have_text("Кодпен кіру")
    p.get_by_label("Кіру коды").fill(code.lower())  # found by its label; any case works
    p.locator("#password").fill(NEW_PASSWORD)
    p.locator("#repeat").fill(NEW_PASSWORD)
    p.locator("#repeat").press("Enter")
    expect(p).to_have_url(f"{site}/app/kk/")
    expect(p.locator("#child-name")).to_have_text("Amir Amirov")
    expect(p.locator("nav.children")).to_have_count(0)  # only himself
    expect(p.locator("nav.tabs a[href*='/settings']")).to_have_count(0)
    expect(p.locator("#push-box")).to_have_count(0)  # notifications are the guardian's
    _shot(tab, "app-student-feed-kk-390", APP_SHOTS)

    p.locator("nav.tabs a[href*='/learning']").click()
    expect(p.locator("h1")).to_have_text("Оқу")
    links = p.locator("ul.launch a")
    expect(links).to_have_count(2)
    expect(links.first).to_have_attribute("href", "https://bilimland.kz/")
    for i in range(2):  # large touch targets
        box = links.nth(i).bounding_box()
        assert box is not None and box["height"] >= 44
    _shot(tab, "app-student-learning-kk-390", APP_SHOTS)
    tab.clean()
