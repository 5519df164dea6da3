"""The console's Learning page and a class's sheet of code slips in Debian's Chromium (Playwright;
issue #16 "For a student", D29-E), at 390 px and on a desktop, used as a school admin would:
the list is typed, saved, reordered and a bad link refused in the admin's language; the class's
slips are made from a pupil's page and the sheet prints two slips a row, without the menu.
Screenshots: docs/screenshots/console/learning-{desktop,ru-390}.png and
class-slips-{desktop,kk-390}.png."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from api_world import World
from playwright.sync_api import Browser, expect
from test_console_browser import DESKTOP, PHONE, Tab, browser  # noqa: F401 (the fixture)

SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots" / "console"


@pytest.fixture
def site(server: str, world: World, database_url: str) -> str:
    with psycopg.connect(database_url) as conn:  # Amir joins Alice's class 5A
        conn.execute("UPDATE people SET class_id = %s WHERE id = %s",
                     (world.ids["class_id"], world.ids["amir"]))  # fmt: skip
    return server


def _shot(tab: Tab, name: str) -> None:
    width = tab.page.viewport_size["width"]  # type: ignore[index]
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= width, name
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_learning_list_typed_reordered_and_saved_on_a_desktop(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    site: str,
) -> None:
    tab = Tab(browser, site, DESKTOP, "en-US")
    p = tab.sign_in("admin1@qadam.kz")
    p.locator("nav a[href='/learning']").first.click()
    expect(p.locator("h1")).to_have_text("Learning resources")
    p.get_by_label("Title").nth(0).fill("Bilimland")
    p.get_by_label("Link (https://…)").nth(0).fill("https://bilimland.kz/")
    p.get_by_label("Title").nth(1).fill("Daryn Online")
    p.get_by_label("Link (https://…)").nth(1).fill("https://daryn.online/")
    p.locator("#learning-save").click()
    expect(p.locator("#learning-saved")).to_be_visible()
    expect(p.locator("#resources legend").nth(0)).to_have_text("Resource 1")
    p.locator("button.move-up").first.click()  # Daryn Online's: the only "up"
    expect(p.locator("#learning-saved")).to_be_visible()
    expect(p.get_by_label("Title").nth(0)).to_have_value("Daryn Online")
    expect(p.get_by_label("Title").nth(1)).to_have_value("Bilimland")
    _shot(tab, "learning-desktop")
    tab.clean()


def test_learning_bad_link_refused_on_a_phone_in_ru(
    browser: Browser,  # noqa: F811
    site: str,
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO learning_resources (school_id, position, title, url)"
                     " VALUES ('s1', 0, 'Bilimland', 'https://bilimland.kz/')")  # fmt: skip
    tab = Tab(browser, site, PHONE, "ru-RU")
    tab.sign_in("admin1@qadam.kz")
    p = tab.go("/learning")
    expect(p.locator("h1")).to_have_text("Учебные ресурсы")
    p.get_by_label("Название").nth(1).fill("Сайт без https")
    p.get_by_label("Ссылка (https://…)").nth(1).fill("http://example.kz/")
    p.get_by_label("Ссылка (https://…)").nth(1).press("Enter")  # the keyboard sends the form
    expect(p.locator("#learning-errors")).to_contain_text("Ресурс 2: ссылка должна быть")
    expect(p.get_by_label("Название").nth(1)).to_have_value("Сайт без https")  # kept to fix
    for button in p.locator("#learning-form button").all():  # large touch targets
        box = button.bounding_box()
        assert box is not None and box["height"] >= 44
    _shot(tab, "learning-ru-390")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM learning_resources").fetchone() == (1,)
    tab.clean()


@pytest.mark.parametrize(("viewport", "locale", "name"), [
    (DESKTOP, "en-US", "class-slips-desktop"), (PHONE, "kk-KZ", "class-slips-kk-390"),
])  # fmt: skip
def test_class_slips_from_a_pupils_page(
    browser: Browser,  # noqa: F811
    site: str,
    world: World,
    viewport: dict[str, int],
    locale: str,
    name: str,
) -> None:
    tab = Tab(browser, site, viewport, locale)
    tab.sign_in("admin1@qadam.kz")
    p = tab.go(f"/people/{world.ids['amir']}")
    p.locator("#student-access summary").click()
    p.locator("#class-slips-link").click()
    expect(p.locator("#class-pupils li")).to_have_count(2)
    width = viewport["width"]  # the pick page fits the screen too
    assert p.evaluate("document.documentElement.scrollWidth") <= width
    p.locator("#only-new").uncheck()  # Alice has a password: a new slip for her too
    p.locator("#print-slips").click()
    slips = p.locator("#slips .pslip")
    expect(slips).to_have_count(2)
    expect(slips.first.locator(".login")).to_have_text("alice@s1.pupil")  # by name: Alice first
    expect(slips.nth(1).locator(".login")).to_have_text(f"{world.ids['amir']}@s1.pupil")
    expect(slips.first.locator(".code")).to_have_text(re.compile(r"^[0-9A-Z]{4}-[0-9A-Z]{4}$"))
    first, second = (slips.nth(i).bounding_box() for i in range(2))
    assert first is not None and second is not None
    side_by_side = abs(first["y"] - second["y"]) < 1
    assert side_by_side == (viewport is DESKTOP)  # two a row on a desktop, one on a phone
    _shot(tab, name)
    p.emulate_media(media="print")  # on paper: no menu, no buttons, two slips a row
    expect(p.locator("#print")).to_be_hidden()
    expect(p.locator("header.top")).to_be_hidden()
    first, second = (slips.nth(i).bounding_box() for i in range(2))
    assert first is not None and second is not None and abs(first["y"] - second["y"]) < 1
    tab.clean()
