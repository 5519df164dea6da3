"""The parents' app's money, statistics and settings pages in Debian's Chromium (Playwright,
390 px, in kk, ru and en; D28-H), used as a parent would: the balance and ledger, the month's
figures and charts, notification settings saved with the keyboard and a consent withdrawn; and
the console's Today with its charts at 390 px and on the desktop. Screenshots:
docs/screenshots/app/app-{money,stats,settings}-<lang>-390.png and
docs/screenshots/console/today-charts-{390,desktop}.png."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import populate_today
from playwright.sync_api import Browser, expect
from test_app_money_pages import _money_world
from test_console_browser import DESKTOP, PHONE, Tab, browser  # noqa: F401 (the fixture)

APP_SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots" / "app"
CONSOLE_SHOTS = APP_SHOTS.parent / "console"
WORDS = {  # what each page says in each language (from the catalogue, checked by eye)
    "kk": {"money": "Тамақ балансы", "stats": "Статистика", "settings": "Хабарламалар",
           "saved": "Хабарлама баптаулары сақталды."},
    "en": {"money": "Meal balance", "stats": "Statistics", "settings": "Notifications",
           "saved": "Notification settings saved."},
    "ru": {"money": "Баланс питания", "stats": "Статистика", "settings": "Уведомления",
           "saved": "Настройки уведомлений сохранены."},
}  # fmt: skip


@pytest.fixture
def site(server: str, world: World, database_url: str) -> str:
    populate_today(database_url, world.ids)  # today: Alice in at 08:10, a free meal
    _money_world(database_url, world.ids)  # 1,200 paid in, a paid meal of 400
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE schools SET day_start = '08:30' WHERE id = 's1'")
        # earlier days of this month and of last month, for the statistics' charts
        conn.execute(
            "INSERT INTO attendance (person_id, day, school_id, first_in, passages)"
            " SELECT %s, d::date, 's1', (d::date + time '07:50' + (i %% 4) * interval '13 min')"
            "   AT TIME ZONE 'Asia/Almaty', 2"
            " FROM generate_series(date_trunc('month', now() AT TIME ZONE 'Asia/Almaty')"
            "   - interval '1 month', (now() AT TIME ZONE 'Asia/Almaty')::date - 1,"
            "   interval '1 day') WITH ORDINALITY AS g(d, i)"
            " WHERE extract(isodow FROM d) < 6 ON CONFLICT DO NOTHING",
            (world.ids["alice"],),
        )
    return server


def _app_sign_in(tab: Tab, lang: str) -> None:
    p = tab.go(f"/app/{lang}/login")
    p.locator("#email").fill("mum@qadam.kz")
    p.locator("#password").fill(PASSWORD)
    p.locator("#password").press("Enter")
    expect(p).to_have_url(f"{tab.base}/app/{lang}/")


def _shot(tab: Tab, name: str, where: Path) -> None:
    # nothing wider than the screen: the page never scrolls sideways
    width = tab.page.viewport_size["width"]  # type: ignore[index]
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= width, name
    where.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(where / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("lang", ["kk", "ru", "en"])
def test_money_statistics_and_settings_on_a_phone(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    site: str,
    lang: str,
) -> None:
    tab = Tab(browser, site, PHONE, {"kk": "kk-KZ", "ru": "ru-RU", "en": "en-US"}[lang])
    _app_sign_in(tab, lang)
    p = tab.page
    words = WORDS[lang]
    # the tabs lead to each page
    p.locator("nav.tabs a[href*='/money']").click()
    expect(p.locator("#balance-h")).to_have_text(words["money"])
    expect(p.locator("#balance")).to_contain_text("800")
    expect(p.locator("ol.ledger li")).to_have_count(2)  # the top-up and the meal
    expect(p.locator("#category")).to_contain_text("Free")
    _shot(tab, f"app-money-{lang}-390", APP_SHOTS)

    p.locator("nav.tabs a[href*='/stats']").click()
    expect(p.locator("h1")).to_contain_text(words["stats"])
    expect(p.locator("figure.chart svg[role='img']")).to_have_count(3)
    assert int(p.locator("#present").inner_text()) >= 1
    expect(p.locator("#average")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    # the month switch: last month, and back
    p.locator("a[rel='prev']").click()
    expect(p.locator("a[rel='next']")).to_have_count(1)
    p.locator("a[rel='next']").click()
    expect(p.locator("a[rel='next']")).to_have_count(0)  # no future months
    _shot(tab, f"app-stats-{lang}-390", APP_SHOTS)

    p.locator("nav.tabs a[href*='/settings']").click()
    expect(p.locator("fieldset legend").first).to_have_text(words["settings"])
    # with the keyboard: meals off, quiet hours on, saved
    p.locator("input[name='meals']").focus()
    p.keyboard.press("Space")
    p.locator("#quiet").focus()
    p.keyboard.press("Space")
    p.locator("#save").focus()
    p.keyboard.press("Enter")
    expect(p.locator("#saved")).to_have_text(words["saved"])
    expect(p.locator("input[name='meals']")).not_to_be_checked()
    expect(p.locator("#quiet")).to_be_checked()
    # touch targets: the checkboxes' labels and the buttons are at least 44 px high
    for sel in ("label.check", "#save", "nav.tabs a"):
        box = p.locator(sel).first.bounding_box()
        assert box is not None and box["height"] >= 44, sel
    if lang == "en":
        p.get_by_role("button", name="Withdraw consent: face recognition").click()
        expect(p.locator("#saved")).to_contain_text("The consent was withdrawn")
        expect(p.locator("#consents")).to_contain_text("withdrawn on")
    _shot(tab, f"app-settings-{lang}-390", APP_SHOTS)
    tab.clean()


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_today_shows_its_charts(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    site: str,
    viewport: dict[str, int],
    width: str,
) -> None:
    tab = Tab(browser, site, viewport, "en-US")
    p = tab.sign_in("admin1@qadam.kz")
    expect(p).to_have_url(f"{site}/today")
    charts = p.locator("#today figure.chart")
    expect(charts).to_have_count(3)
    expect(p.locator("#chart-hours rect.bar[data-label='08']")).to_have_attribute("data-value", "2")
    p.locator("#charts-h").scroll_into_view_if_needed()
    _shot(tab, f"today-charts-{width}", CONSOLE_SHOTS)
    tab.clean()
