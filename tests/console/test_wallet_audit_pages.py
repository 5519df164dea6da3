"""The console's Social Wallet and Audit log pages in-process (D28-F): roles and scope as the
API's, deliveries by state with their reasons in words, resending one or the selected (audited,
the API's path), re-pricing price_missing, the connector's status, the audit log's filters and
keyset pages. The same flows in Chromium: test_reports_browser.py."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient
from reports_helpers import populate_month, reject_deliveries


@pytest.fixture
def rejected(database_url: str, world: World) -> list[str]:
    populate_month(database_url, world.ids)
    return reject_deliveries(database_url)


def _post(client: TestClient, path: str, data: Any) -> Any:
    return client.post(path, data=data, headers=SAME_ORIGIN, follow_redirects=False)


def _rows(url: str, q: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(q, params).fetchall()]


def test_wallet_needs_a_session_and_the_api_roles(
    client: TestClient, rejected: list[str], database_url: str
) -> None:
    r = client.get("/social-wallet", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/social-wallet"
    sign_in(client, "cook1@qadam.kz", PASSWORD)
    assert client.get("/social-wallet").status_code == 403
    assert _post(client, "/social-wallet/resend", {"key": rejected[0]}).status_code == 403
    client.cookies.clear()
    sign_in(client, "d1@qadam.kz", PASSWORD)  # reads, may not resend (as in the API)
    page = client.get("/social-wallet")
    assert page.status_code == 200 and "Alice Aliyeva" in page.text
    assert "/social-wallet/resend" not in page.text
    assert _post(client, "/social-wallet/resend", {"key": rejected[0]}).status_code == 403
    assert _rows(database_url, "SELECT DISTINCT state FROM sw_deliveries") == [("rejected",)]


def test_deliveries_by_state_with_reasons_and_status(
    client: TestClient, rejected: list[str]
) -> None:
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    page = client.get("/social-wallet")
    assert page.status_code == 200
    assert 'data-state="rejected"' in page.text and "rejected: <strong>2</strong>" in page.text
    assert "the meal has no price" in page.text  # price_missing in words
    assert "price_missing: from the receiver" in page.text  # and as it came
    assert "Not configured: nothing delivers the meal records" in page.text  # no worker runs
    assert "2 records wait." not in page.text  # rejected ones do not wait for a worker
    # filters: a state with none, a date range without meals, a bad date
    assert "No meal records match." in client.get("/social-wallet?state=accepted").text
    assert "No meal records match." in client.get("/social-wallet?date_from=2025-11-01").text
    r = client.get("/social-wallet?date_from=yesterday")
    assert r.status_code == 422 and "The date is not a date." in r.text
    r = client.get("/social-wallet?cursor=nonsense")
    assert r.status_code == 422 and "That page link is broken." in r.text
    # another school is not found
    r = client.get("/social-wallet?school=s3")
    assert r.status_code == 422 and "No such school." in r.text and "Alice" not in r.text


def test_resend_one_and_the_selected_is_audited(
    client: TestClient, rejected: list[str], database_url: str
) -> None:
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    r = _post(client, "/social-wallet/resend", {"key": rejected[0], "back": "state=rejected"})
    assert r.status_code == 303 and r.headers["location"] == "/social-wallet?state=rejected&done=1"
    assert "1 record was sent again." in client.get(r.headers["location"]).text
    states = dict(_rows(database_url, "SELECT idempotency_key, state FROM sw_deliveries"))
    assert states == {rejected[0]: "pending", rejected[1]: "rejected"}
    audit = _rows(database_url, "SELECT actor, entity_id, before->>'state', after->>'state'"
                  " FROM audit_log WHERE entity = 'sw_deliveries'")  # fmt: skip
    assert audit == [("admin1@qadam.kz", rejected[0], "rejected", "pending")]
    # the selection: a key no longer resendable is skipped, the other resent
    r = _post(client, "/social-wallet/resend", {"key": rejected})
    assert r.status_code == 303 and r.headers["location"].endswith("done=1")
    assert {s for (s,) in _rows(database_url, "SELECT state FROM sw_deliveries")} == {"pending"}
    # nothing ticked: a clear error
    r = _post(client, "/social-wallet/resend", {"back": ""})
    assert r.status_code == 422 and "Select at least one record." in r.text


def test_resend_outside_the_scope_changes_nothing(
    client: TestClient, rejected: list[str], database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
            " meal_category, occurred_at, day) VALUES ('gate-3', 1, 7, 's3', %s, 1, now(),"
            " current_date)",
            (_cara(database_url),),
        )
        conn.execute("UPDATE sw_deliveries SET state = 'dead' WHERE school_id = 's3'")
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    r = _post(client, "/social-wallet/resend", {"key": [rejected[0], "meal:gate-3:1:7"]})
    assert r.status_code == 404 and "A selected record is not in your scope." in r.text
    states = {s for (s,) in _rows(database_url, "SELECT state FROM sw_deliveries")}
    assert states == {"rejected", "dead"}  # not even the one in scope was resent
    assert _rows(database_url, "SELECT count(*) FROM audit_log WHERE entity LIKE 'sw_%%'") == [(0,)]
    r = _post(client, "/social-wallet/reprice", {"school": "s3"})
    assert r.status_code == 404
    assert {s for (s,) in _rows(database_url, "SELECT state FROM sw_deliveries")} == {
        "rejected", "dead"}  # fmt: skip


def _cara(url: str) -> int:
    return int(_rows(url, "SELECT id FROM people WHERE full_name = 'Cara Caspian'")[0][0])


def test_reprice_price_missing_resends_them_through_the_api_path(
    client: TestClient, rejected: list[str], database_url: str
) -> None:
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    assert "Price and resend every record rejected for a missing price" in client.get(
        "/social-wallet").text  # fmt: skip
    r = _post(client, "/social-wallet/reprice", {"school": "s1", "back": "reason=price_missing"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/social-wallet?reason=price_missing&done=2"
    assert {s for (s,) in _rows(database_url, "SELECT state FROM sw_deliveries")} == {"pending"}
    request = _rows(database_url, "SELECT after->>'reason', after->>'resent' FROM audit_log"
                    " WHERE entity = 'sw_resend'")  # fmt: skip
    assert request == [("price_missing", "2")]


def test_audit_log_scope_filters_and_pages(
    client: TestClient, rejected: list[str], database_url: str, world: World
) -> None:
    with psycopg.connect(database_url) as conn:  # 60 rows of s1 by the admin, 1 of s3
        for i in range(60):
            conn.execute(
                "INSERT INTO audit_log (actor_id, actor, action, entity, entity_id, school_id,"
                " after) VALUES (%s, 'admin1@qadam.kz', 'update', 'people', %s, 's1',"
                ' \'{"full_name": "changed"}\')',
                (world.users["school_admin"], str(i)),
            )
        conn.execute(
            "INSERT INTO audit_log (actor, action, entity, entity_id, school_id, at)"
            " VALUES ('admin3@qadam.kz', 'delete', 'cards', 'secret-of-s3', 's3',"
            " '2025-01-01T00:00:00Z')"
        )
    sign_in(client, "cook1@qadam.kz", PASSWORD)
    assert client.get("/audit").status_code == 403  # not an AuditReader in the API
    client.cookies.clear()
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    page = client.get("/audit")
    assert page.status_code == 200
    assert page.text.count("person: changed") == 50 and "secret-of-s3" not in page.text
    assert "&#34;full_name&#34;: &#34;changed&#34;" in page.text  # the raw record, expandable
    older = page.text.split('id="next" href="')[1].split('"')[0].replace("&amp;", "&")
    assert older.startswith("/audit?before=")
    page2 = client.get(older).text
    assert page2.count("person: changed") == 10 and 'id="next"' not in page2
    # filters: object id, action, time
    assert client.get("/audit?entity=people&entity_id=7").text.count("person: changed") == 1
    assert "Nothing in the audit log matches." in client.get("/audit?action=delete").text
    assert "Nothing in the audit log matches." in client.get(
        "/audit?until=2025-06-01T00:00").text  # fmt: skip
    r = client.get("/audit?action=explode")
    assert r.status_code == 422 and "Unknown action." in r.text
    r = client.get("/audit?since=2026-01-02T00:00&until=2026-01-01T00:00")
    assert r.status_code == 422 and "The start is after the end." in r.text
    # the platform sees every school's rows
    client.cookies.clear()
    sign_in(client, "root@qadam.kz", PASSWORD)
    page = client.get("/audit?actor=admin3")
    assert "secret-of-s3" in page.text and "card: deleted" in page.text
