"""The console's Reports page in-process (D28-F): roles and scope as the API's, generate, the
preview in the page, each anomaly acknowledged (who, when, audited), approval refused while one
is open, downloads with the session cookie (none without), the reminder banner, the district's
roll-up. The same flows in Chromium: test_reports_browser.py."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest
from api_world import PASSWORD, World, login
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient
from reports_helpers import DAY, MONTH, populate_month

from cloud.reports import due

FORM = {"school": "s1", "month": MONTH, "kind": "meals"}


@pytest.fixture
def month(database_url: str, world: World) -> World:
    populate_month(database_url, world.ids)
    return world


def _post(client: TestClient, path: str, data: dict[str, str]) -> object:
    return client.post(path, data=data, headers=SAME_ORIGIN, follow_redirects=False)


def _one(url: str, q: str, params: tuple[object, ...] = ()) -> tuple[object, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(q, params).fetchone()
    assert row is not None
    return tuple(row)


def test_reports_need_a_session_and_a_reader_role(client: TestClient, month: World) -> None:
    for path in ("/reports", f"/reports/download?school=s1&month={MONTH}&kind=meals&format=pdf"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    for email in ("cook1@qadam.kz", "tech1@qadam.kz"):  # no report role in the API either
        sign_in(client, email, PASSWORD)
        assert client.get("/reports").status_code == 403
        assert client.get(f"/reports/download?{_q(format='csv')}").status_code == 403
        client.cookies.clear()


def _q(**extra: str) -> str:
    from urllib.parse import urlencode

    return urlencode({**FORM, **extra})


def test_generate_preview_acknowledge_each_then_approve(
    client: TestClient, month: World, database_url: str
) -> None:
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    page = client.get(f"/reports?month={MONTH}")
    assert page.status_code == 200
    assert "live preview" in page.text and "Alice Aliyeva" in page.text  # the table, live
    assert "The live cross-check finds 2 anomalies" in page.text

    r = _post(client, "/reports/generate", FORM)
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    page = client.get(f"/reports?{_q()}")
    assert "draft, not approved" in page.text
    assert "2 anomalies of the cross-check are not acknowledged yet." in page.text
    assert "Meal recorded, pupil not on site" in page.text
    assert "Eligible pupil present, not fed" in page.text
    assert 'id="preview-lines"' in page.text and "Alice Aliyeva" in page.text

    # approval refused while an anomaly is open: nothing changes
    r = _post(client, "/reports/approve", FORM)
    assert r.status_code == 409  # type: ignore[attr-defined]
    assert "acknowledge every anomaly first" in r.text  # type: ignore[attr-defined]
    assert _one(database_url, "SELECT status FROM reports WHERE kind = 'meals'") == ("draft",)

    alice, amir = month.ids["alice"], month.ids["amir"]
    ack = {"school": "s1", "month": MONTH, "check": "fed_not_present",
           "person_id": str(alice), "day": DAY}  # fmt: skip
    assert _post(client, "/reports/acknowledge", ack).status_code == 303  # type: ignore[attr-defined]
    assert _post(client, "/reports/acknowledge", ack).status_code == 303  # twice: no second row
    assert _one(database_url, "SELECT count(*), min(acknowledged_by) FROM report_anomaly_acks") \
        == (1, month.users["school_admin"])  # fmt: skip
    page = client.get(f"/reports?{_q()}")
    assert "1 anomaly of the cross-check is not acknowledged yet." in page.text
    assert "by admin1@qadam.kz" in page.text
    assert _post(client, "/reports/approve", FORM).status_code == 409  # type: ignore[attr-defined]

    # a made-up anomaly is refused and changes nothing
    bad = {**ack, "person_id": str(amir)}  # Amir was on site: not a fed_not_present anomaly
    assert _post(client, "/reports/acknowledge", bad).status_code == 404  # type: ignore[attr-defined]
    bad = {**ack, "check": "something"}
    assert _post(client, "/reports/acknowledge", bad).status_code == 404  # type: ignore[attr-defined]
    assert _one(database_url, "SELECT count(*) FROM report_anomaly_acks") == (1,)

    ack2 = {**ack, "check": "present_not_fed", "person_id": str(amir)}
    assert _post(client, "/reports/acknowledge", ack2).status_code == 303  # type: ignore[attr-defined]
    r = _post(client, "/reports/approve", FORM)
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    status = _one(database_url, "SELECT status, approved_by FROM reports WHERE kind = 'meals'")
    assert status == ("approved", month.users["school_admin"])
    page = client.get(f"/reports?{_q()}")
    assert "approved" in page.text and "by admin1@qadam.kz" in page.text
    assert "/reports/approve" not in page.text and "/reports/generate" not in page.text
    # audited: the generation, each acknowledgement, the approval
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT entity, action, after->>'check' FROM audit_log"
            " WHERE entity IN ('reports', 'report_anomaly_acks') ORDER BY id"
        ).fetchall()
    assert rows == [("reports", "create", None),
                    ("report_anomaly_acks", "create", "fed_not_present"),
                    ("report_anomaly_acks", "create", "present_not_fed"),
                    ("reports", "update", None)]  # fmt: skip
    # approved: generating again is refused
    r = _post(client, "/reports/generate", FORM)
    assert r.status_code == 409  # type: ignore[attr-defined]
    # the API shows the same acknowledgements, who and when
    token = login(client, "d1@qadam.kz")
    r = client.get(f"/api/v1/reports/schools/s1/anomalies?month={MONTH}",
                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert [(a["check"], a["person_id"], a["day"], a["acknowledged_by"]) for a in r.json()] == [
        ("fed_not_present", alice, DAY, "admin1@qadam.kz"),
        ("present_not_fed", amir, DAY, "admin1@qadam.kz"),
    ]
    assert all(a["acknowledged_at"] for a in r.json())


def test_attendance_report_preview_and_approval_without_anomalies(
    client: TestClient, month: World, database_url: str
) -> None:
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    form = {**FORM, "kind": "attendance"}
    assert _post(client, "/reports/approve", form).status_code == 404  # not generated
    assert _post(client, "/reports/generate", form).status_code == 303  # type: ignore[attr-defined]
    page = client.get(f"/reports?{_q(kind='attendance')}")
    assert 'id="preview-days"' in page.text and "08:40:00" in page.text  # Amir's first entry
    assert _post(client, "/reports/approve", form).status_code == 303  # type: ignore[attr-defined]
    assert _one(database_url, "SELECT status FROM reports WHERE kind = 'attendance'") == (
        "approved",
    )


@pytest.mark.parametrize("fmt", ["pdf", "xlsx", "csv"])
def test_download_with_the_session(client: TestClient, month: World, fmt: str) -> None:
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    r = client.get(f"/reports/download?{_q(format=fmt)}")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == f'attachment; filename="meals-s1-{MONTH}.{fmt}"'
    magic = {"pdf": b"%PDF", "xlsx": b"PK", "csv": "\ufeff".encode()}[fmt]
    assert r.content.startswith(magic)
    if fmt == "csv":
        assert "Alice Aliyeva" in r.content.decode("utf-8-sig")
    # the same bytes as the API's download for the same report (bearer token)
    client.cookies.clear()
    r = client.get(f"/reports/download?{_q(format=fmt)}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def test_another_school_is_not_found(client: TestClient, month: World, database_url: str) -> None:
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    assert client.get("/reports?school=s3").status_code == 404
    assert client.get("/reports?school=nope").status_code == 404
    assert client.get(f"/reports/download?school=s3&month={MONTH}&kind=meals&format=csv") \
        .status_code == 404  # fmt: skip
    for path in ("/reports/generate", "/reports/approve"):
        assert _post(client, path, {**FORM, "school": "s3"}).status_code == 404  # type: ignore[attr-defined]
    assert _one(database_url, "SELECT count(*) FROM reports") == (0,)
    # a district authority reads its district's schools but may not sign
    client.cookies.clear()
    sign_in(client, "d1@qadam.kz", PASSWORD)
    assert client.get("/reports?school=s1").status_code == 200
    assert client.get("/reports?school=s3").status_code == 404
    assert _post(client, "/reports/generate", FORM).status_code == 403  # type: ignore[attr-defined]
    assert _one(database_url, "SELECT count(*) FROM reports") == (0,)


def test_bad_input_is_answered_and_changes_nothing(
    client: TestClient, month: World, database_url: str
) -> None:
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    r = client.get("/reports?month=2025-13", headers={"Accept-Language": "ru"})
    assert r.status_code == 422 and '<html lang="ru">' in r.text
    assert "Месяц указан не как месяц (ГГГГ-ММ)." in r.text
    r = _post(client, "/reports/generate", {**FORM, "month": "October"})
    assert r.status_code == 422  # type: ignore[attr-defined]
    r = _post(client, "/reports/generate", {**FORM, "kind": "salaries"})
    assert r.status_code == 422 and "Unknown report." in r.text  # type: ignore[attr-defined]
    r = _post(client, "/reports/acknowledge", {"school": "s1", "month": MONTH,
              "check": "fed_not_present", "person_id": "x", "day": DAY})  # fmt: skip
    assert r.status_code == 404 and "no such anomaly" in r.text  # type: ignore[attr-defined]
    r = client.get(f"/reports/download?{_q(format='docx')}")
    assert r.status_code == 422 and "Unknown file format." in r.text
    assert _one(database_url, "SELECT count(*) FROM reports") == (0,)


def test_district_rollup_links_each_school(
    client: TestClient, month: World, database_url: str
) -> None:
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    _post(client, "/reports/generate", FORM)
    client.cookies.clear()
    sign_in(client, "d1@qadam.kz", PASSWORD)
    page = client.get(f"/reports?month={MONTH}")
    assert page.status_code == 200 and 'id="report-states"' in page.text
    assert f'href="/reports?school=s1&amp;month={MONTH}"' in page.text
    assert "School s2" in page.text and "School s3" not in page.text  # d1: s1 and s2
    assert "draft, not approved" in page.text and "not generated" in page.text
    assert "2 / 2" in page.text  # s1: two anomalies, both open
    # the platform sees every school
    client.cookies.clear()
    sign_in(client, "root@qadam.kz", PASSWORD)
    assert "School s3" in client.get(f"/reports?month={MONTH}").text


def test_reminder_before_the_fifth(client: TestClient, month: World, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        on_3rd = due.due(conn, "s1", date(2025, 11, 3))
        assert [(d.kind, d.status, d.overdue) for d in on_3rd] == [
            ("meals", "not generated", False), ("attendance", "not generated", False)]  # fmt: skip
        assert on_3rd[0].deadline == date(2025, 11, 5) and on_3rd[0].month == date(2025, 10, 1)
        assert [d.overdue for d in due.due(conn, "s1", date(2025, 11, 6))] == [True, True]
        conn.execute(
            "INSERT INTO reports (school_id, month, kind, summary, data, status, approved_at)"
            " VALUES ('s1', '2025-10-01', 'meals', '{}', '{}', 'approved', now())"
        )
        assert [d.kind for d in due.due(conn, "s1", date(2025, 11, 3))] == ["attendance"]
        today = due.local_day(conn, "s1")
    # the banner on /reports and /today of a school admin names last month and the 5th
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    for path in ("/reports", "/today"):
        page = client.get(path).text
        assert 'id="reports-due"' in page, path
        verb = "was due" if today.day > 5 else "is due"
        assert "The meal report for " in page and f"{verb} by 5 " in page
    client.cookies.clear()
    sign_in(client, "d1@qadam.kz", PASSWORD)  # for school admins only
    assert 'id="reports-due"' not in client.get("/today").text
