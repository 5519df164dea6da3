"""The Reports, Social Wallet and Audit log pages in Debian's Chromium (Playwright), as a person
uses them, at 390 px and at desktop width (D28-F): generate a month's meal report, read it in the
page, have approval refused, acknowledge each anomaly, approve, download the PDF through the
page's link (the session cookie, no token); a district's roll-up; resend a rejected Social Wallet
record; filter the audit log and open a raw record. No console errors, nothing off the machine.
Screenshots: docs/screenshots/console/{reports,reports-district,social-wallet,audit}-*.png."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest
from api_world import World
from playwright.sync_api import Browser, expect
from reports_helpers import MONTH, populate_month, reject_deliveries
from test_console_browser import DESKTOP, PHONE, Tab, browser  # noqa: F401 (the fixture)

from cloud.reports import service


@pytest.fixture
def site(server: str, world: World, database_url: str) -> str:
    populate_month(database_url, world.ids)
    return server


def _refused(tab: Tab, status: str) -> None:
    """Chromium logs a page answered with an error status; the page's own message is what
    the person reads (checked by the caller)."""
    tab.errors = [e for e in tab.errors if status not in e]


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_generate_acknowledge_approve_and_download(
    browser: Browser,  # noqa: F811
    site: str,
    viewport: dict[str, int],
    width: str,
) -> None:
    tab = Tab(browser, site, viewport, "en-US")
    p = tab.sign_in("admin1@qadam.kz")
    p.get_by_role("link", name="Reports", exact=True).click()
    expect(p.locator("h1")).to_have_text("Reports: School s1")
    p.get_by_label("Month").fill(MONTH)
    p.get_by_role("button", name="Show").click()
    expect(p.locator("#report-status")).to_contain_text("live preview")
    expect(p.locator("#preview-lines")).to_contain_text("Alice Aliyeva")

    p.get_by_role("button", name="Generate").click()
    expect(p.locator("#report-status")).to_contain_text("draft, not approved")
    expect(p.locator("#anomaly-list tbody tr")).to_have_count(2)
    expect(p.locator("#open-count")).to_have_text(
        "2 anomalies of the cross-check are not acknowledged yet."
    )
    p.get_by_role("button", name="Approve").click()
    expect(p.get_by_role("alert")).to_have_text(
        "Approval refused: acknowledge every anomaly first."
    )
    _refused(tab, "409")

    p.get_by_role("button", name="Acknowledge: Alice Aliyeva, 2025-10-09").click()
    expect(p.locator("#open-count")).to_have_text(
        "1 anomaly of the cross-check is not acknowledged yet."
    )
    expect(p.locator("#anomaly-list")).to_contain_text("by admin1@qadam.kz")
    if width == "desktop":
        tab.shot("reports-anomalies-desktop")
    p.get_by_role("button", name="Acknowledge: Amir Amirov, 2025-10-09").focus()
    p.keyboard.press("Enter")  # the keyboard works as well as a tap
    expect(p.locator("#open-count")).to_have_text(
        "0 anomalies of the cross-check are not acknowledged yet."
    )
    p.get_by_role("button", name="Approve").click()
    expect(p.locator("#report-status")).to_contain_text("approved")
    expect(p.locator("#report-status")).to_contain_text("by admin1@qadam.kz")
    expect(p.get_by_role("button", name="Approve")).to_have_count(0)
    tab.shot(f"reports-{width}")

    with p.expect_download() as got:
        p.get_by_role("link", name="PDF").click()
    download = got.value
    assert download.suggested_filename == f"meals-s1-{MONTH}.pdf"
    path = download.path()
    assert path is not None
    with open(path, "rb") as f:
        assert f.read(5) == b"%PDF-"
    tab.clean()


def test_district_sees_each_school_state(
    browser: Browser,  # noqa: F811
    site: str,
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:  # s1's meal report made by the scheduler
        service.generate(conn, "s1", date(2025, 10, 1), "meals", None)
    tab = Tab(browser, site, DESKTOP, "en-US")
    p = tab.sign_in("d1@qadam.kz")
    tab.go(f"/reports?month={MONTH}")
    expect(p.locator("h1")).to_contain_text("Reports of your schools")
    rows = p.locator("#report-states tbody tr")
    expect(rows).to_have_count(2)  # s1 and s2: the district's schools only
    expect(rows.first).to_contain_text("draft, not approved")
    expect(rows.first).to_contain_text("2 / 2")  # both anomalies open
    expect(rows.nth(1)).to_contain_text("not generated")
    tab.shot("reports-district-desktop")
    p.get_by_role("link", name="School s1").click()
    expect(p.locator("h1")).to_have_text("Reports: School s1")
    expect(p.get_by_role("button", name="Generate")).to_have_count(0)  # reads, does not sign
    tab.clean()


@pytest.mark.parametrize(("viewport", "width"), [(PHONE, "390"), (DESKTOP, "desktop")])
def test_resend_a_rejected_record_then_find_it_in_the_audit_log(
    browser: Browser,  # noqa: F811
    site: str,
    database_url: str,
    viewport: dict[str, int],
    width: str,
) -> None:
    keys = reject_deliveries(database_url)
    tab = Tab(browser, site, viewport, "en-US")
    p = tab.sign_in("admin1@qadam.kz")
    p.get_by_role("link", name="Social Wallet").click()
    expect(p.locator("#sw-status")).to_contain_text("Not configured")
    expect(p.locator("#deliveries tbody tr")).to_have_count(2)
    expect(p.locator("#deliveries")).to_contain_text("the meal has no price")
    tab.shot(f"social-wallet-{width}")

    p.get_by_role("button", name="Resend", exact=True).first.click()
    expect(p.locator("#notice")).to_have_text("1 record was sent again.")
    expect(p.locator("#counts")).to_contain_text("rejected: 1")
    p.locator("#deliveries input[type=checkbox]").first.check()
    p.get_by_role("button", name="Resend the selected records").click()
    expect(p.locator("#notice")).to_have_text("1 record was sent again.")
    expect(p.locator("#counts")).to_contain_text("rejected: 0")

    p.get_by_role("link", name="Audit log").click()
    p.get_by_label("Object", exact=True).select_option("sw_deliveries")
    p.get_by_role("button", name="Show").click()
    rows = p.locator("#audit tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Social Wallet record: changed")
    expect(p.locator("#audit")).to_contain_text(keys[0])
    p.get_by_text("Show the record").first.click()
    expect(p.locator("#audit pre").first).to_contain_text('"resent": true')
    tab.shot(f"audit-{width}")
    tab.clean()


def test_reports_in_kazakh_on_a_phone(browser: Browser, site: str) -> None:  # noqa: F811
    tab = Tab(browser, site, PHONE, "kk-KZ")
    p = tab.sign_in("admin1@qadam.kz")
    tab.go(f"/reports?month={MONTH}")
    expect(p.locator("h1")).to_have_text("Есептер: School s1")
    p.get_by_role("button", name="Жасау", exact=True).click()
    expect(p.locator("#report-status")).to_contain_text("жоба, бекітілмеген")
    p.get_by_role("button", name="Бекіту").click()
    expect(p.get_by_role("alert")).to_have_text(
        "Бекіту қабылданбады: алдымен әр ауытқуды растаңыз."
    )
    _refused(tab, "409")
    expect(p.locator("#reports-due")).to_contain_text("тапсырылуы тиіс")
    tab.shot("reports-kk-390")
    tab.clean()
