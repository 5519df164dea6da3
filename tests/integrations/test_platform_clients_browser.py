"""The Platform access page in Debian's Chromium (Playwright), at 390 px and at desktop width:
the platform admin is refused an unknown school, registers a platform for a school with one
kind of data, sees its secret once (the read API accepts it), and switches it off. Screenshots:
docs/screenshots/console/platform-clients-*.png."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import Browser, expect
from test_console_browser import DESKTOP, PHONE, Tab
from test_console_browser import browser as browser  # noqa: F401 (the fixture)
from test_webhook_browser import _full_shot
from test_webhook_browser import site as site  # noqa: F401 (the fixture)


def _token(site: str, cid: str, secret: str) -> requests.Response:
    return requests.post(f"{site}/api/v1/platform/token", auth=(cid, secret),
                         data={"grant_type": "client_credentials"}, timeout=10)  # fmt: skip


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_register_a_platform_see_the_secret_once_and_switch_it_off(
    browser: Browser,  # noqa: F811
    site: str,  # noqa: F811
    viewport: dict[str, int],
    width: str,
) -> None:
    tab = Tab(browser, site, viewport, "en-US")
    p = tab.sign_in("root@qadam.kz")
    p.goto(site + "/platform-clients")
    expect(p.locator("h1")).to_have_text("Platform access")
    expect(p.locator("#no-clients")).to_be_visible()
    p.get_by_label("Name").fill("Regional platform")
    p.get_by_label("School ids it may read, one a line").fill("s1\nnope")
    p.get_by_label("Meals received").check()
    p.get_by_role("button", name="Register", exact=True).click()
    expect(p.get_by_role("alert")).to_have_text("Give the ids of existing schools, one a line.")
    p.get_by_label("School ids it may read, one a line").fill("s1")
    p.get_by_role("button", name="Register", exact=True).click()
    expect(p.locator("#made")).to_contain_text("Registered: Regional platform")
    cid = p.locator("#made-client-id").inner_text()
    secret = p.locator("#secret-value").inner_text()
    r = _token(site, cid, secret)
    assert r.status_code == 200 and r.json()["scope"] == "meals.read"
    _full_shot(tab, f"platform-clients-{width}")
    p.goto(site + "/platform-clients")
    assert secret not in p.content()  # shown once
    p.get_by_role("button", name="Switch off").click()
    expect(p.locator(f"#client-{cid}")).to_contain_text("Switched off")
    assert _token(site, cid, secret).status_code == 401
    tab.clean()


def test_a_school_admin_is_refused_the_page(browser: Browser, site: str) -> None:  # noqa: F811
    tab = Tab(browser, site, PHONE, "ru-RU")
    p = tab.sign_in("admin1@qadam.kz")
    response = p.goto(site + "/platform-clients")
    assert response is not None and response.status == 403
    tab.errors.clear()  # the refused document itself is logged as a failed load
    tab.clean()
