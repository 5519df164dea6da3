"""The menu planner in Debian's Chromium (Playwright), as a school admin uses it at phone width
(390 px) and on a desktop: add a dish with a photo taken by a phone, plan next Monday's lunch
from the catalogue (the price sum follows the picks), save, and see it in next week with its
photo. No console errors, no request leaves the machine. Screenshots: menu-dish-*, menu-day-*,
menu-week-* in docs/screenshots/console/ (docs/console.md shows them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from menu_helpers import next_monday, phone_jpeg
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cloud.commands import menu as board_menus

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots" / "console"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is required for the web page tests (./dev test installs it)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class MenuTab:
    """A page that records console errors and requests off the machine (each fails the test)."""

    def __init__(self, browser: Browser, base: str, viewport: dict[str, int]) -> None:
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

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.outside == [], self.outside
        self.context.close()


def _loaded(img: Any) -> int:
    """The image's natural width once it has loaded (a lazy image loads when scrolled to)."""
    img.scroll_into_view_if_needed()
    img.evaluate(
        "i => (i.complete && i.naturalWidth) ? 0 : new Promise(r => {"
        " i.addEventListener('load', r, {once: true}); i.addEventListener('error', r, {once: true})"
        " })"
    )
    return int(img.evaluate("i => i.complete ? i.naturalWidth : 0"))


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_a_school_admin_adds_a_dish_with_a_photo_and_plans_next_monday(
    browser: Browser, server: str, world: World, database_url: str,
    viewport: dict[str, int], width: str, tmp_path: Path,
) -> None:  # fmt: skip
    with psycopg.connect(database_url) as conn:
        monday = next_monday(board_menus.school_today(conn, "s1"))
    photo = tmp_path / "IMG_2041.jpg"
    photo.write_bytes(phone_jpeg())
    tab = MenuTab(browser, server, viewport)
    p = tab.page
    p.goto(server + "/login")
    p.locator("#email").fill("admin1@qadam.kz")
    p.locator("#password").fill(PASSWORD)
    p.locator("#password").press("Enter")
    p.wait_for_load_state()

    # the menu entry, then the dishes tab
    p.get_by_role("navigation", name="Main").get_by_role("link", name="Menu").click()
    expect(p.locator("h1")).to_have_text("Menu")
    p.get_by_role("navigation", name="Menu pages").get_by_role("link", name="Dishes").click()
    expect(p.locator("h1")).to_have_text("Dishes")
    p.get_by_label("Name in Kazakh").fill("Бешбармақ")
    p.get_by_label("Name in Russian").fill("Бешбармак")
    p.get_by_label("Name in English (optional)").fill("Beshbarmak")
    p.get_by_label("Price, tenge").fill("1250.50")
    p.get_by_label("gluten").check()
    p.get_by_label("Photo (JPEG, PNG or WebP, up to 8 MB)").set_input_files(str(photo))
    p.get_by_role("button", name="Add the dish").click()
    expect(p.get_by_role("status")).to_have_text("The dish is added.")
    row = p.locator("tr", has_text="Beshbarmak")
    expect(row).to_contain_text("1,250.50")
    expect(row).to_contain_text("gluten")
    img = row.get_by_role("img", name="Photo of Бешбармак")
    expect(img).to_be_visible()
    assert _loaded(img) == 100  # the 200 px thumbnail of the upright photo (100 x 200)
    tab.shot(f"menu-dish-{width}")
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT id FROM dishes WHERE name_en = 'Beshbarmak'").fetchone()
    assert found is not None
    new_dish, plov = int(found[0]), world.ids["dish_id"]

    # next week, next Monday, lunch: the new dish first, plov with it
    p.get_by_role("link", name="Week").click()
    p.get_by_role("link", name="Next week").click()
    day = p.locator(f'section[data-date="{monday.isoformat()}"]')
    expect(day).to_contain_text("Nothing planned.")
    day.get_by_role("link", name="Plan the day").click()
    lunch = p.locator('fieldset[data-period="lunch"]')
    lunch.get_by_label("Main dish").select_option(f"lunch:{new_dish}")
    lunch.get_by_label("Dish 2").select_option(f"lunch:{plov}")
    expect(lunch.locator(".js-price")).to_have_text("1,600.50\u00a0₸")  # summed as picked
    expect(lunch.locator(".js-allergens")).to_have_text("gluten")
    tab.shot(f"menu-day-{width}")
    p.get_by_role("button", name="Save the day").click()

    expect(p.get_by_role("status")).to_contain_text("The day is saved.")
    day = p.locator(f'section[data-date="{monday.isoformat()}"]')
    lunch_set = day.locator('div.set[data-period="lunch"]')
    expect(lunch_set).to_contain_text("Beshbarmak")
    expect(lunch_set).to_contain_text("Плов")
    expect(lunch_set).to_contain_text("1,600.50")
    expect(lunch_set).to_contain_text("gluten")
    thumb = lunch_set.locator("img").first
    thumb.scroll_into_view_if_needed()
    expect(thumb).to_be_visible()
    assert _loaded(thumb) == 100
    day.scroll_into_view_if_needed()
    tab.shot(f"menu-week-{width}")
    tab.clean()
