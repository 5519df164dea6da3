"""The parents' app's menu, allergen restrictions and rating in Debian's Chromium (Playwright,
390 px; D28-G), in Kazakh, Russian and English: the guardian signs in, ticks milk on the
restrictions page (with the keyboard-usable labelled checkboxes), sees the milk porridge's set
blocked on the menu, rates the porridge Alice was served, and, offline, still reads the menu
the service worker kept; the school confirms a removal and reads the ratings on the console.
Screenshots: docs/screenshots/app/app-{menu,restrictions,rating}-
<lang>-390.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from appmenu_helpers import MILK, ratings, restriction_row, seed_menu
from playwright.sync_api import Browser, Page, expect
from test_console_browser import DESKTOP, PHONE, Tab, browser  # noqa: F401 (the Chromium fixture)

SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots" / "app"
LOCALES = {"kk": "kk-KZ", "ru": "ru-RU", "en": "en-US"}
# what the pages say, per language (from the catalogues, as a parent reads them)
SAYS = {
    "kk": {"blocked": "Тыйым салынған", "rate": "Бағалау", "send": "Бағаны жіберу",
           "thanks": "Рақмет", "save": "Сақтау", "milk": "сүт", "porridge": "Сүт ботқасы"},
    "ru": {"blocked": "Заблокировано", "rate": "Оценить", "send": "Отправить оценку",
           "thanks": "Спасибо", "save": "Сохранить", "milk": "молоко",
           "porridge": "Молочная каша"},
    "en": {"blocked": "Blocked", "rate": "Rate", "send": "Send the rating", "thanks": "Thank you",
           "save": "Save", "milk": "milk", "porridge": "Milk porridge"},
}  # fmt: skip


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("lang", ["kk", "ru", "en"])
def test_menu_restrictions_and_rating_on_a_phone(
    browser: Browser,  # noqa: F811
    server: str,
    world: World,
    database_url: str,
    lang: str,
) -> None:
    alice = world.ids["alice"]
    seed = seed_menu(database_url, alice)
    with psycopg.connect(database_url) as conn:  # a photo of ours for the porridge
        conn.execute("UPDATE dishes SET photo_url = '/static/app-icon-192.png' WHERE id = %s",
                     (seed["porridge"],))  # fmt: skip
    says = SAYS[lang]
    context = browser.new_context(viewport=PHONE, locale=LOCALES[lang])
    outside: list[str] = []

    def only_loopback(route: Any) -> None:
        if route.request.url.startswith(server) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{server}/app/{lang}/login")
    page.locator("#email").fill("mum@qadam.kz")
    page.locator("#password").fill(PASSWORD)
    page.locator("#password").press("Enter")
    expect(page).to_have_url(f"{server}/app/{lang}/")

    # the restrictions tab: tick milk with the keyboard, save
    page.locator(f'nav.tabs a[href^="/app/{lang}/restrictions"]').click()
    expect(page).to_have_url(f"{server}/app/{lang}/restrictions?child={alice}")
    milk = page.locator('input[name="allergen"][value="milk"]')
    milk.focus()
    page.keyboard.press("Space")
    expect(milk).to_be_checked()
    page.get_by_role("button", name=says["save"], exact=True).click()
    expect(page.locator(".state")).to_contain_text(says["milk"])
    assert restriction_row(database_url, alice) == (MILK, MILK, None, False)
    box = milk.bounding_box()
    label = page.locator("label.check").first.bounding_box()
    assert box is not None and label is not None and label["height"] >= 44  # a finger's target
    _shot(page, f"app-restrictions-{lang}-390")

    # the menu: the porridge's set is blocked for Alice, with the photo and the allergen named
    page.locator(f'nav.tabs a[href^="/app/{lang}/menu"]').click()
    today = page.locator(f"#day-{seed['today'].isoformat()}")
    porridge = today.locator("li.dish", has_text=says["porridge"])
    expect(porridge).to_have_class("dish blocked")
    expect(porridge.locator(".tag-blocked")).to_have_text(says["blocked"])
    expect(porridge.locator(".allergens")).to_contain_text(says["milk"])
    assert porridge.locator("img").evaluate("i => i.complete && i.naturalWidth > 0")
    expect(today.locator(".menu-set.blocked")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    _shot(page, f"app-menu-{lang}-390")

    # rate the porridge Alice was served: 4 and a comment
    porridge.get_by_role("link", name=says["rate"]).click()
    page.locator('label:has(input[name="score"][value="4"])').click()
    page.locator("#comment").fill("Жылы / тёплая / warm")
    _shot(page, f"app-rating-{lang}-390")
    page.get_by_role("button", name=says["send"]).click()
    expect(page.locator("p.ok")).to_contain_text(says["thanks"])
    assert [(r[1], r[3]) for r in ratings(database_url)] == [(seed["porridge"], 4)]
    expect(page.locator(f"#day-{seed['today'].isoformat()} li.dish .rated")).to_have_count(1)

    if lang == "en":
        # offline: the service worker kept the menu page the guardian opened
        page.wait_for_function("navigator.serviceWorker.controller !== null")
        page.goto(f"{server}/app/en/menu?child={alice}")
        context.set_offline(True)
        page.reload()
        expect(page.locator(f"#day-{seed['today'].isoformat()}")).to_contain_text("Milk porridge")
        context.set_offline(False)
    expected = [e for e in errors if "ERR_INTERNET_DISCONNECTED" in e]
    assert [e for e in errors if e not in expected] == []
    assert outside == []
    context.close()


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_the_school_confirms_a_removal_and_reads_the_ratings(
    browser: Browser,  # noqa: F811
    server: str,
    world: World,
    database_url: str,
    viewport: dict[str, int],
    width: str,
) -> None:
    """The console's side (D28-G): a guardian's removal of milk waits on **Allergies** until the
    school admin confirms it; the week's ratings on **Ratings**. Screenshots into
    docs/screenshots/console/."""
    alice = world.ids["alice"]
    seed = seed_menu(database_url, alice)
    with psycopg.connect(database_url) as conn:  # milk, confirmed; then the guardian removes it
        conn.execute(
            "INSERT INTO allergen_restrictions (person_id, allergen_mask, allergens, set_by,"
            " requested_mask, requested_allergens, requested_by, requested_at)"
            " VALUES (%s, %s, '{milk}', %s, 0, '{}', %s, now())",
            (alice, MILK, world.users["guardian"], world.users["guardian"]),
        )
        conn.execute("UPDATE people SET allergen_mask = %s WHERE id = %s", (MILK, alice))
        conn.execute(
            "INSERT INTO meal_ratings (person_id, dish_id, served_on, score, comment)"
            " VALUES (%s, %s, %s, 2, 'cold'), (%s, %s, %s, 5, '')",
            (alice, seed["porridge"], seed["today"], alice, seed["tea"], seed["today"]),
        )
    tab = Tab(browser, server, viewport, "en-US")
    tab.sign_in("admin1@qadam.kz")
    p = tab.go("/restrictions")
    item = p.locator(f"#person-{alice}")
    expect(item).to_contain_text("The guardian asks to remove: milk")
    tab.shot(f"restrictions-{width}")
    item.get_by_role("button", name="Confirm").click()
    expect(p.get_by_role("status")).to_contain_text("Confirmed")
    expect(p.locator(f"#person-{alice}")).to_have_count(0)
    assert restriction_row(database_url, alice) == (0, 0, None, True)
    p = tab.go("/ratings")
    rows = p.locator("table.ratings tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Milk porridge")  # the lowest average first
    expect(rows.first.locator("td.bad")).to_have_text("2.00")
    tab.shot(f"ratings-{width}")
    tab.clean()
