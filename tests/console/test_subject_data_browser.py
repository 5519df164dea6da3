"""The person page's data-subject buttons in Debian's Chromium (Playwright), at phone width and
desktop, as a school admin uses them (D29-B): download the person's data as a JSON file,
deactivate them, be refused an erasure whose reason names the person, then erase with a reason
and the confirmation ticked; the page in Kazakh. No console error, no request leaves the
machine. Screenshots go to docs/screenshots/console/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from playwright.sync_api import Browser, Page, expect, sync_playwright

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
DESKTOP = {"width": 1280, "height": 900}
ADMIN = "admin1@qadam.kz"  # api_world's school admin of s1
REASON = "Written request of the parent, 1 December 2026, No. 14"


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is required for the web page tests (./dev test installs it)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Tab:
    """A page that records console errors and requests leaving the machine (test failures)."""

    def __init__(self, browser: Browser, base: str, viewport: dict[str, int]) -> None:
        self.base = base
        self.context = browser.new_context(viewport=viewport, locale="en-US", accept_downloads=True)
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
        # a refused form answers 4xx: Chromium logs "Failed to load resource" for it (expected)
        errors = [e for e in self.errors if "status of 422" not in e and "status of 409" not in e]
        assert errors == [], errors
        assert self.outside == [], self.outside
        self.context.close()


def _person(database_url: str, person_id: int) -> tuple[Any, ...]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT full_name, active, erased_at IS NOT NULL,"
            " (SELECT count(*) FROM cards WHERE person_id = %s) FROM people WHERE id = %s",
            (person_id, person_id),
        ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_school_admin_exports_then_erases_a_pupils_data(
    browser: Browser,
    server: str,
    world: World,
    database_url: str,
    tmp_path: Path,
    viewport: dict[str, int],
    width: str,
) -> None:
    alice = world.ids["alice"]
    tab = Tab(browser, server, viewport)
    p = tab.page
    p.goto(f"{server}/people/{alice}")
    p.locator("#email").fill(ADMIN)
    p.locator("#password").fill(PASSWORD)
    p.locator("#password").press("Enter")
    expect(p.locator("h1")).to_have_text("Alice Aliyeva")
    section = p.locator("#personal-data")
    expect(section.get_by_role("heading", name="Personal data")).to_be_visible()
    expect(p.locator("#erase-form")).to_have_count(0)  # active: deactivation comes first

    # the export: a JSON file with every table about her
    with p.expect_download() as got:
        section.get_by_role("button", name="Download all data (JSON)").click()
    download = got.value
    assert download.suggested_filename == f"person-{alice}.json"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    doc = json.loads(saved.read_text())
    assert doc["person"]["full_name"] == "Alice Aliyeva" and "cards" in doc["tables"]

    section.get_by_role("button", name="Deactivate: left the school").click()
    expect(p.get_by_role("status").first).to_contain_text("The person is deactivated")
    assert _person(database_url, alice)[:2] == ("Alice Aliyeva", False)
    form = p.locator("#erase-form")
    expect(form).to_be_visible()
    tab.shot(f"person-erase-{width}")

    # the browser itself asks for the reason and the tick before anything is sent
    form.get_by_role("button", name="Erase personal data").click()
    expect(p.locator("#erase-form")).to_be_visible()
    assert _person(database_url, alice)[2] is False
    # a reason that names her is refused by the server, and says why
    form.get_by_label("Reason").fill("The mother of Alice asked for it")
    form.get_by_label("I understand that the erasure cannot be undone.").check()
    form.get_by_role("button", name="Erase personal data").click()
    expect(p.get_by_role("alert")).to_contain_text("must not name the person")
    assert _person(database_url, alice)[2] is False

    form = p.locator("#erase-form")
    form.get_by_label("Reason").fill(REASON)
    form.get_by_label("I understand that the erasure cannot be undone.").check()
    form.get_by_role("button", name="Erase personal data").click()
    expect(p.get_by_role("status").first).to_contain_text("personal data is erased")
    expect(p.locator("h1")).to_have_text(f"Person No. {alice}")
    expect(p.locator("#erased-note")).to_be_visible()
    expect(p.locator("#erase-form")).to_have_count(0)
    assert _person(database_url, alice) == ("", False, True, 0)
    tab.shot(f"person-erased-{width}")

    # the same page in Kazakh (the language kept on the user)
    p.get_by_label("Language").select_option("kk")
    p.get_by_role("button", name="Change language").click()
    expect(p.locator("#h-pd")).to_have_text("Дербес деректер")
    expect(p.locator("h1")).to_have_text(f"№ {alice} адам")
    tab.clean()
