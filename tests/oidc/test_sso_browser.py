"""Single sign-on in Debian's Chromium (Playwright; issue #17 "Must show"): Alice, a pupil, on
a 390 px phone in Kazakh, opens an e-textbook platform (an independent relying party,
tests/oidc/relying_party.py), signs in once through our sign-in page, agrees to what the
platform receives, and is back at the platform signed in with her role and class; opening the
platform again she is signed in at once. On a desktop in English the platform signs her out
(RP-initiated logout) and a platform sending a redirect address it did not register is refused.
From the app's Learning tab (in Russian) she opens the platform her school enabled already
signed in, and her mother sees it in the app's Platforms tab. Screenshots:
docs/screenshots/app/sso-{login,consent}-kk-390.png, sso-refused-en-desktop.png,
sso-learning-ru-390.png, sso-guardian-platforms-ru-390.png; the registration page:
docs/screenshots/console/sso-register-{390,desktop}.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD
from oidc_helpers import register
from playwright.sync_api import Browser, Page, expect, sync_playwright
from relying_party import RelyingParty

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots" / "app"


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is required for the web page tests (./dev test installs it)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def rp(server: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RelyingParty]:
    # oauthlib refuses plain http; both sites are on loopback here (https in production)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with RelyingParty(server) as party:
        made = register(database_url, "Oqulyq", [party.redirect_uri],
                        ["openid", "role", "school", "class", "locale"],
                        [f"{party.base}/bye"])  # fmt: skip
        party.client_id, party.secret = made.client_id, made.secret
        yield party
    assert party.errors == []


class Tab:
    """A page that may visit only the provider and the platform; console errors fail."""

    def __init__(self, browser: Browser, sites: tuple[str, ...], viewport: dict[str, int],
                 locale: str) -> None:  # fmt: skip
        self.sites = sites
        self.context = browser.new_context(viewport=viewport, locale=locale)
        self.outside: list[str] = []
        self.context.route("**/*", self._only_ours)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.visited: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("framenavigated", lambda f: self.visited.append(f.url))

    def _only_ours(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.sites) or url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def shot(self, name: str, where: Path = SHOTS) -> None:
        width = self.page.viewport_size["width"]  # type: ignore[index]
        assert self.page.evaluate("document.documentElement.scrollWidth") <= width, name
        where.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(where / f"{name}.png"), full_page=True)

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.outside == [], self.outside
        self.context.close()


def test_a_pupil_signs_in_once_and_opens_the_platform_signed_in(
    browser: Browser, server: str, rp: RelyingParty
) -> None:
    tab = Tab(browser, (server, rp.base), PHONE, "kk-KZ")
    p = tab.page
    p.goto(f"{rp.base}/start")
    expect(p).to_have_url(f"{server}/oidc/login?" + p.url.split("?", 1)[1])
    expect(p.locator("h1")).to_have_text("Кіру")
    expect(p.locator("#platform-line")).to_contain_text("Oqulyq")
    tab.shot("sso-login-kk-390")
    p.get_by_label("Пошта").fill("alice@s1.pupil")
    p.locator("#password").fill(PASSWORD)
    p.locator("#password").press("Enter")  # the keyboard, not a click
    expect(p.locator("h1")).to_have_text("Оқу платформасымен бөлісу керек пе?")
    claims = p.locator("#consent-claims li")
    expect(claims).to_have_count(5)
    expect(claims.nth(3)).to_have_text("Сыныбыңыз бен оқу жылыңыз")
    box = p.locator("#allow").bounding_box()
    assert box is not None and box["height"] >= 44  # a touch target
    tab.shot("sso-consent-kk-390")
    p.locator("#allow").click()
    expect(p.locator("#signed-in")).to_be_visible()
    assert p.url.startswith(f"{rp.base}/callback?")
    expect(p.locator("#claim-role")).to_have_text("student")
    expect(p.locator("#claim-class")).to_have_text("5A")
    expect(p.locator("#claim-grade")).to_have_text("5")
    expect(p.locator("#claim-school_id")).to_have_text("s1")
    expect(p.locator("#claim-locale")).to_have_text("kk")  # she signed in in Kazakh
    first_sub = p.locator("#claim-sub").inner_text()

    # the platform again, later: no sign-in page, no question, straight back signed in
    tab.visited.clear()
    p.goto(f"{rp.base}/start")
    expect(p.locator("#signed-in")).to_be_visible()
    expect(p.locator("#claim-sub")).to_have_text(first_sub)
    assert not [u for u in tab.visited if "/oidc/login" in u], tab.visited
    tab.clean()


def test_the_platform_signs_her_out_and_a_wrong_address_is_refused(
    browser: Browser, server: str, rp: RelyingParty, database_url: str
) -> None:
    tab = Tab(browser, (server, rp.base), DESKTOP, "en-US")
    p = tab.page
    p.goto(f"{rp.base}/start")
    p.locator("#email").fill("alice@s1.pupil")
    p.locator("#password").fill(PASSWORD)
    p.locator("#password").press("Enter")
    p.locator("#allow").click()
    expect(p.locator("#signed-in")).to_be_visible()
    p.goto(f"{rp.base}/logout")
    expect(p.locator("#bye")).to_be_visible()
    expect(p.locator("#state")).to_have_text("bye-1")
    p.goto(f"{server}/app/en/")  # our session ended too
    expect(p).to_have_url(f"{server}/app/en/login")

    # a platform that sends people to an address it did not register: our page, no redirect
    other = register(database_url, "Shady", ["https://shady.example/cb"], ["openid"])
    p.goto(f"{server}/oidc/authorize?response_type=code&client_id={other.client_id}"
           f"&redirect_uri={rp.base}/callback&scope=openid&state=x"
           "&code_challenge=" + "a" * 43 + "&code_challenge_method=S256")  # fmt: skip
    assert p.url.startswith(f"{server}/oidc/authorize")
    expect(p.locator("h1")).to_have_text("Sign-in was refused")
    expect(p.get_by_role("alert")).to_contain_text("did not register")
    tab.errors = [e for e in tab.errors if "400" not in e]  # the page's own status
    tab.shot("sso-refused-en-desktop")
    tab.clean()


def test_the_learning_tab_opens_the_platform_signed_in_and_mum_sees_it(
    browser: Browser, server: str, rp: RelyingParty, database_url: str
) -> None:
    from cloud.auth.principal import Principal
    from cloud.oidc import launch

    with psycopg.connect(database_url) as conn:
        launch.enable(conn, Principal(user_id=None, email="t", role="platform_admin"),
                      rp.client_id, "s1", f"{rp.base}/start")  # fmt: skip
    tab = Tab(browser, (server, rp.base), PHONE, "ru-RU")
    p = tab.page
    p.goto(f"{server}/app/ru/login")
    p.locator("#email").fill("alice@s1.pupil")
    p.locator("#password").fill(PASSWORD)
    p.locator("#password").press("Enter")
    p.goto(f"{server}/app/ru/learning")
    link = p.locator("#sso-platforms a")
    expect(link).to_have_count(1)
    expect(link).to_contain_text("Oqulyq")
    tab.shot("sso-learning-ru-390")
    with tab.context.expect_page() as opened:
        link.click()
    platform = opened.value
    platform.on("framenavigated", lambda f: tab.visited.append(f.url))
    expect(platform.locator("h1")).to_have_text("Поделиться с учебной платформой?")
    platform.locator("#allow").click()  # no sign-in page: the app's session is the one
    expect(platform.locator("#signed-in")).to_be_visible()
    expect(platform.locator("#claim-role")).to_have_text("student")
    assert not [u for u in tab.visited if "/oidc/login" in u], tab.visited
    tab.clean()

    mum = Tab(browser, (server,), PHONE, "ru-RU")
    q = mum.page
    q.goto(f"{server}/app/ru/login")
    q.locator("#email").fill("mum@qadam.kz")
    q.locator("#password").fill(PASSWORD)
    q.locator("#password").press("Enter")
    q.locator("nav.tabs a[href^='/app/ru/platforms']").click()
    expect(q.locator("h1")).to_have_text("Платформы")
    expect(q.locator("ul.platforms li")).to_have_count(1)
    expect(q.locator("ul.platforms li strong")).to_have_text("Oqulyq")
    mum.shot("sso-guardian-platforms-ru-390")
    mum.clean()


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_a_platform_admin_registers_a_platform(
    browser: Browser, server: str, database_url: str, viewport: dict[str, int], width: str
) -> None:
    tab = Tab(browser, (server,), viewport, "en-US")
    p = tab.page
    p.goto(f"{server}/sso")
    p.locator("#email").fill("root@qadam.kz")
    p.locator("#password").fill(PASSWORD)
    p.locator("#password").press("Enter")
    expect(p).to_have_url(f"{server}/sso")
    p.get_by_label("Name", exact=True).fill("Daryn Books")
    p.get_by_label("Redirect addresses, one a line (exact match)").fill(
        "https://daryn.example/callback"
    )
    p.get_by_label("Addresses after sign-out, one a line (optional)").fill(
        "https://daryn.example/bye"
    )
    p.locator("#scope-class").check()
    expect(p.locator("#scope-openid")).to_be_checked()  # always, and cannot be unticked
    p.get_by_role("button", name="Register", exact=True).click()
    expect(p.locator("#made")).to_be_visible()
    secret = p.locator("#made-secret").inner_text()
    client_id = p.locator("#made-client-id").inner_text()
    assert len(secret) == 43
    tab.shot(f"sso-register-{width}", SHOTS.parent / "console")
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT name, scopes FROM oidc_clients WHERE client_id = %s", (client_id,)
        ).fetchone()
    assert row == ("Daryn Books", ["openid", "class"])
    p.goto(f"{server}/sso")
    expect(p.locator("#client-list")).to_contain_text("Daryn Books")
    expect(p.locator("body")).not_to_contain_text(secret)  # shown once
    tab.clean()
