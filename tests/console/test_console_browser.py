"""The console in Debian's Chromium (Playwright), as a person uses it: signing in as each kind of
staff, what each sees and must not see, a guardian refused, a cross-site form refused, a wrong
password answered in the browser's language, phone (390 px) and desktop widths, no console
errors, the API docs without internet. The screenshots go to docs/screenshots/console/
(docs/console.md shows them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import populate_today
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
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is required for the web page tests (./dev test installs it)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def site(server: str, world: World, database_url: str) -> str:
    populate_today(database_url, world.ids)
    return server


class Tab:
    """A page that records console errors and failed requests (each is a test failure)."""

    def __init__(self, browser: Browser, base: str, viewport: dict[str, int], locale: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport=viewport, locale=locale)
        # nothing may leave the machine: the console works offline (no CDN)
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

    def go(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page

    def sign_in(self, email: str, password: str = PASSWORD) -> Page:
        p = self.go("/login")
        p.locator("#email").fill(email)
        p.locator("#password").fill(password)
        p.locator("#password").press("Enter")  # the keyboard, not a click
        p.wait_for_load_state()
        return p

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"))

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.outside == [], self.outside
        self.context.close()


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_school_admin_signs_in_and_sees_their_school(
    browser: Browser, site: str, viewport: dict[str, int], width: str, database_url: str
) -> None:
    tab = Tab(browser, site, viewport, "en-US")
    p = tab.go("/today")
    expect(p).to_have_url(f"{site}/login?next=/today")
    expect(p.locator("h1")).to_have_text("Sign in")
    tab.shot(f"sign-in-{width}")
    # every field has a label (found by its label, as a screen reader would)
    expect(p.get_by_label("E-mail", exact=True)).to_be_visible()
    expect(p.get_by_label("Password", exact=True)).to_be_visible()
    expect(p.get_by_label("Language", exact=True)).to_have_count(1)

    tab.sign_in("admin1@qadam.kz", "wrong password")
    expect(p.get_by_role("alert")).to_have_text("Wrong e-mail or password.")
    tab.shot(f"sign-in-wrong-{width}")

    p.locator("#password").fill(PASSWORD)
    p.locator("#password").press("Enter")
    expect(p).to_have_url(f"{site}/today")
    expect(p.locator("h1")).to_have_text("Today: School s1")
    expect(p.locator("#arrived")).to_have_text("2")
    expect(p.locator("#late")).to_have_text("1")  # Amir at 08:47, lessons at 08:30
    expect(p.locator("#meals")).to_contain_text("free")
    expect(p.locator("#offline")).to_contain_text("gate-1")
    assert p.locator("#school").count() == 0  # one school: no picker
    tab.shot(f"today-{width}")
    # the keyboard: the first Tab reaches "Skip to content", the next ones the menu
    p.keyboard.press("Tab")
    expect(p.locator("a.skip")).to_be_focused()
    p.keyboard.press("Tab")
    p.keyboard.press("Tab")
    expect(p.get_by_role("link", name="Today")).to_be_focused()

    p.get_by_role("link", name="Live events").click()
    expect(p).to_have_url(f"{site}/live")
    rows = p.locator("#taps tr")
    expect(rows).to_have_count(3)  # today's three taps at gate-1; none of s2 or s3
    expect(p.locator("#taps")).to_contain_text("Alice Aliyeva")
    expect(p.locator("#taps")).not_to_contain_text("Bob Bekov")
    expect(p.locator("#taps")).not_to_contain_text("Cara Caspian")
    # nothing of another school, even when asked for by the URL
    tab.go("/live?school=s3")
    expect(p.get_by_role("alert")).to_have_text("No such school.")
    tab.go("/live")
    tab.shot(f"live-{width}")

    # filter by result with the form (keyboard: select, then Enter in a field)
    p.locator("#f-result").select_option("denied")
    p.get_by_role("button", name="Show").click()
    expect(p.locator("#status")).to_have_text("1 event")
    expect(p.locator("#taps")).to_contain_text("unknown card")

    # a tap arriving while the page is open appears without a reload
    tab.go("/live")
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
            " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at) VALUES"
            " ('gate-1', 1, 500, 's1', %s, '1111111111111111', 'tap', 'out', 'granted', 'ok',"
            " now(), true, 1000, now())",
            (tab_world_amir(database_url),),
        )
    expect(rows).to_have_count(4, timeout=15_000)
    expect(p.locator("#status")).to_have_text("4 events")

    p.get_by_role("button", name="Sign out").click()
    expect(p).to_have_url(f"{site}/login")
    tab.go("/today")
    expect(p).to_have_url(f"{site}/login?next=/today")
    tab.clean()


def tab_world_amir(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT id FROM people WHERE full_name = 'Amir Amirov'").fetchone()
    assert row is not None
    return int(row[0])


def test_district_and_platform_see_their_scope(browser: Browser, site: str) -> None:
    tab = Tab(browser, site, DESKTOP, "en-US")
    p = tab.sign_in("d1@qadam.kz")
    expect(p).to_have_url(f"{site}/today")
    # the district's two schools, one row each (not the other district's s3)
    expect(p.locator("h1")).to_have_text("Today in your schools")
    rows = p.locator("table.rollup tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("School s1")
    expect(rows.nth(0)).to_contain_text("2 / 2")  # both of s1's pupils came in
    expect(rows.nth(1)).to_contain_text("School s2")
    tab.shot("today-district-desktop")
    p.get_by_role("link", name="School s2").click()
    expect(p.locator("h1")).to_have_text("Today: School s2")
    # and from there, the picker holds exactly the district's schools
    expect(p.locator("#school option")).to_have_text(["School s1", "School s2"])
    p.locator("#school").select_option("s1")
    p.get_by_role("button", name="Show").click()
    expect(p.locator("h1")).to_have_text("Today: School s1")
    tab.go("/live")
    expect(p.locator("#taps")).to_contain_text("Bob Bekov")
    expect(p.locator("#taps")).to_contain_text("Alice Aliyeva")
    expect(p.locator("#taps")).not_to_contain_text("Cara Caspian")
    expect(p.locator("#f-school option")).to_have_count(3)  # all, s1, s2
    tab.shot("live-district-desktop")
    p.get_by_role("button", name="Sign out").click()

    p = tab.sign_in("root@qadam.kz")
    tab.go("/live")
    for name in ("Alice Aliyeva", "Bob Bekov", "Cara Caspian"):
        expect(p.locator("#taps")).to_contain_text(name)
    tab.clean()


def test_guardian_is_refused_in_their_language(browser: Browser, site: str) -> None:
    tab = Tab(browser, site, PHONE, "ru-RU")
    p = tab.sign_in("mum@qadam.kz")
    expect(p.get_by_role("alert")).to_have_text("Эта консоль предназначена для сотрудников школ.")
    expect(p.locator("html")).to_have_attribute("lang", "ru")
    tab.go("/today")
    expect(p).to_have_url(f"{site}/login?next=/today")
    tab.clean()


def test_wrong_password_in_kazakh_and_switching_language(browser: Browser, site: str) -> None:
    tab = Tab(browser, site, PHONE, "kk-KZ")
    p = tab.sign_in("admin1@qadam.kz", "not it")
    expect(p.get_by_role("alert")).to_have_text("Электрондық пошта немесе құпиясөз қате.")
    p.locator("#password").fill(PASSWORD)
    p.locator("#password").press("Enter")
    expect(p.locator("h1")).to_contain_text("Бүгін")
    tab.shot("today-kk-390")
    p.locator("#lang-select").select_option("ru")
    p.get_by_role("button", name="Тілді ауыстыру").click()
    expect(p.locator("h1")).to_contain_text("Сегодня")
    expect(p.locator("html")).to_have_attribute("lang", "ru")
    tab.clean()


def test_cross_site_form_is_refused(browser: Browser, site: str, database_url: str) -> None:
    """A signed-in admin visits another site whose page posts a form to the console: refused,
    nothing changes (the language stays unset)."""
    tab = Tab(browser, site, DESKTOP, "en-US")
    tab.sign_in("admin1@qadam.kz")
    p = tab.page
    p.goto("about:blank")
    p.set_content(
        f'<form method="post" action="{site}/lang"><input name="lang" value="ru">'
        '<input name="next" value="/today"><button>go</button></form>'
    )
    with p.expect_response(f"{site}/lang") as got:
        p.locator("button").click()
    assert got.value.status == 403
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT locale FROM users WHERE email = 'admin1@qadam.kz'").fetchone()
    assert row is not None and row[0] is None
    tab.errors = [e for e in tab.errors if "403" not in e]  # the refused POST itself
    tab.clean()


def test_api_docs_work_offline(browser: Browser, site: str) -> None:
    tab = Tab(browser, site, DESKTOP, "en-US")
    p = tab.go("/docs")
    expect(p.locator(".swagger-ui .info .title")).to_contain_text("qadam", timeout=15_000)
    expect(p.locator(".opblock-tag").first).to_be_visible()
    tab.shot("api-docs-desktop")
    p = tab.go("/redoc")
    expect(p.locator("h1").first).to_contain_text("qadam", timeout=15_000)
    tab.clean()
