"""The console's role matrix in Chromium (issue #15 "Must show: the role matrix for the console
pages, tested in the browser"). Written from the issue's rules, not read from the code: each
kind of staff signs in, its menu shows exactly its pages, every page answers it or says "Not
available" (403), and an object of a school outside its scope is "not found" (404). The API's
own matrix is tests/cloud/test_auth_matrix.py; the pages' in-process tests check the same per
page."""

from __future__ import annotations

from typing import Any

import pytest
from api_world import EMAILS, World
from playwright.sync_api import Browser

from tests.console.test_console_browser import DESKTOP, PHONE, Tab, browser  # noqa: F401

P, D, S, C, T = ("platform_admin", "district_authority", "school_admin", "canteen_operator",
                 "technician")  # fmt: skip
ALL = {P, D, S, C, T}
# page -> who may open it (the API's rules for the data behind each page)
PAGES: dict[str, set[str]] = {
    "/today": {P, D, S},  # attendance and meals of a school: the report readers
    "/live": {P, D, S},  # events: the event readers among staff
    "/people": {P, D, S, C},  # the counter needs names and meal rights
    "/people/{alice}": {P, D, S, C},
    "/import": {P, S},  # writes people
    "/guardians": {P, S},  # invites guardians
    "/learning": {P, D, S},  # the learning list: the API's readers; P and S edit it (D29-E)
    "/restrictions": {P, S},  # confirms a guardian's allergy change
    "/menu": {P, S, C},  # plans meals
    "/menu/dishes": {P, S, C},
    "/ratings": {P, S, C},
    "/fleet": {P, D, S, T},  # the boards
    "/fleet/gate-1": {P, D, S, T},
    "/reports": {P, D, S},
    "/social-wallet": {P, D, S},
    "/audit": {P, S},
    "/sso": {P, S},  # P registers learning platforms, S lists them for its school (D29-F)
    "/webhooks": {P, D, S},  # a school's webhooks; hosts are kept by P and D (D29-I)
    "/platform-clients": {P},  # platforms' machine clients read across districts (D29-I)
    "/password": ALL,
}
# the menu: every page above without an id, plus the API docs
MENU = {page for page in PAGES if "{" not in page and page.count("/") == 1} | {"/docs"}
# objects outside the role's scope (api_world: s1 and s2 in district D1, s3 in D2)
OUTSIDE = {
    S: ["/people/{cara}", "/fleet/gate-3", "/people/{bob}"],  # s3, s3, s2: not their school
    D: ["/people/{cara}", "/fleet/gate-3"],  # s3 is in another district
    C: ["/people/{bob}"],
    T: ["/fleet/gate-3"],
}


def _url(path: str, ids: dict[str, Any]) -> str:
    return path.format(alice=ids["alice"], bob=ids["bob"], cara=ids["cara"])


@pytest.mark.parametrize("role", [P, D, S, C, T])
def test_each_role_sees_its_pages_and_no_others(
    browser: Browser,  # noqa: F811
    server: str,
    world: World,
    role: str,
) -> None:
    tab = Tab(browser, server, DESKTOP, "en-US")
    p = tab.sign_in(EMAILS[role])
    shown = {a.get_attribute("href") for a in p.locator("nav[aria-label=Main] a").all()}
    assert shown == {m for m in MENU if m == "/docs" or role in PAGES[m]}, role
    failures = []
    refused = 0  # each refused document is a console message "Failed to load resource: 40x"
    for path, allowed in PAGES.items():
        response = p.goto(server + _url(path, world.ids))
        assert response is not None
        want = 200 if role in allowed else 403
        refused += want != 200
        if response.status != want:
            failures.append(f"{role} {path}: {response.status}, expected {want}")
            continue
        heading = p.locator("main h1").first.inner_text()
        if want == 403 and heading != "Not available":
            failures.append(f"{role} {path}: refused without saying so ({heading!r})")
        if want == 200 and heading in ("Not available", "Not found"):
            failures.append(f"{role} {path}: 200 but {heading!r}")
    for path in OUTSIDE.get(role, []):
        response = p.goto(server + _url(path, world.ids))
        assert response is not None
        refused += 1
        if response.status != 404:
            failures.append(f"{role} {path}: {response.status}, expected 404 (outside scope)")
    assert not failures, "\n".join(failures)
    statuses = [e for e in tab.errors if e.startswith("Failed to load resource: the server "
                                                      "responded with a status of 40")]  # fmt: skip
    assert len(statuses) == refused, tab.errors  # the refused pages themselves, nothing else
    tab.errors = [e for e in tab.errors if e not in statuses]
    tab.clean()


def test_a_refused_page_on_a_phone(browser: Browser, server: str) -> None:  # noqa: F811
    tab = Tab(browser, server, PHONE, "en-US")
    p = tab.sign_in(EMAILS[T])
    response = p.goto(server + "/people")
    assert response is not None and response.status == 403
    assert p.locator("main h1").inner_text() == "Not available"
    assert p.get_by_role("link", name="Back to the start").is_visible()
    tab.shot("refused-390")
    assert len(tab.errors) == 1 and "403" in tab.errors[0]  # the refused page itself
    tab.errors.clear()
    tab.clean()
