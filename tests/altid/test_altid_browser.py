"""The app's "Entry without a card" page in Debian's Chromium (Playwright), as a guardian uses
it on a phone (390 px) in kk, ru and en and on a desktop: the Entry tab, the QR code allowed with
one button, the code drawn as SVG inside the screen's width and large enough for a scanner, the
PIN allowed and set with the keyboard; and the code replaced by the next step's when its 30 s
end (htmx, no reload). Screenshots: docs/screenshots/app/entry-<lang>-390.png and
entry-desktop.png."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from api_world import PASSWORD, World
from playwright.sync_api import Browser, expect
from test_console_browser import DESKTOP, PHONE, Tab, browser  # noqa: F401 (the fixture)

from cloud.altid import keys

SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots" / "app"
WORDS = {  # the page's heading and the PIN's saved message, from the altid catalogue part
    "kk": ("Картасыз кіру", "PIN орнатылды."),
    "ru": ("Вход без карты", "PIN-код задан."),
    "en": ("Entry without a card", "The PIN is set."),
}


def _sign_in(tab: Tab, lang: str) -> None:
    p = tab.go(f"/app/{lang}/login")
    p.locator("#email").fill("mum@qadam.kz")
    p.locator("#password").fill(PASSWORD)
    p.locator("#password").press("Enter")
    expect(p).to_have_url(f"{tab.base}/app/{lang}/")


def _shot(tab: Tab, name: str) -> None:
    width = tab.page.viewport_size["width"]  # type: ignore[index]
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= width, name
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize(
    ("lang", "viewport", "name"),
    [("kk", PHONE, "entry-kk-390"), ("ru", PHONE, "entry-ru-390"),
     ("en", PHONE, "entry-en-390"), ("en", DESKTOP, "entry-desktop")],
)  # fmt: skip
def test_a_guardian_allows_the_code_and_sets_the_pin(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    server: str,
    world: World,
    lang: str,
    viewport: dict[str, int],
    name: str,
) -> None:
    tab = Tab(browser, server, viewport, {"kk": "kk-KZ", "ru": "ru-RU", "en": "en-US"}[lang])
    _sign_in(tab, lang)
    p = tab.page
    p.locator("nav.tabs a[href*='/entry']").click()
    expect(p.locator("h1")).to_have_text(WORDS[lang][0])
    expect(p.locator("#altid-code")).to_have_count(0)
    p.locator("#allow-qr").click()
    code = p.locator("#altid-code figure.qr svg")
    expect(code).to_be_visible()
    box = code.bounding_box()
    assert box is not None and 150 <= box["width"] <= viewport["width"], box
    p.locator("#allow-pin").click()
    p.locator("#pin").fill("2468")
    p.locator("#again").fill("2468")
    p.locator("#again").press("Enter")
    expect(p.locator("#saved")).to_contain_text(WORDS[lang][1])
    for sel in ("#save-pin", "nav.tabs a"):
        b = p.locator(sel).first.bounding_box()
        assert b is not None and b["height"] >= 44, sel
    _shot(tab, name)
    tab.clean()


def test_the_code_is_replaced_when_its_step_ends(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    server: str,
    world: World,
) -> None:
    tab = Tab(browser, server, PHONE, "en-US")
    _sign_in(tab, "en")
    p = tab.go("/app/en/entry")
    p.locator("#allow-qr").click()
    first = p.locator("#altid-code figure.qr").get_attribute("data-code")
    assert first is not None and first.startswith(f"Q1.{world.ids['alice']}.")
    step = int(first.split(".")[2])
    # within the step's end and a second: the page fetched the next step's code by itself
    wait_ms = ((step + 1) * keys.STEP_S - time.time() + 3) * 1000
    expect(p.locator("#altid-code figure.qr")).not_to_have_attribute(
        "data-code", first, timeout=wait_ms
    )
    second = p.locator("#altid-code figure.qr").get_attribute("data-code")
    assert second is not None and int(second.split(".")[2]) == step + 1
    tab.clean()
