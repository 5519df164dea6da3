"""The parents' app's money, statistics and settings pages, in-process (D28-H): scope (another
child or another child's consent is "not found"), the balance, ledger and meal category, the
low-balance notice queued by a meal, the month's attendance figures, the notification settings
obeyed by the push path (an opted-out kind sends nothing; quiet hours hold a notice and send one
summary after them), and the consent withdrawal (audited, the API's path)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import SAME_ORIGIN
from fake_push import Browser, FakePushService
from fastapi.testclient import TestClient

from cloud.auth.principal import Principal
from cloud.ledger import post
from cloud.push import subscriptions
from cloud.push.message import PushMessage
from cloud.push.service import WebPushService
from cloud.push.webpush import VapidKey
from cloud.settings import Settings
from cloud.workers.outbox import OutboxWorker, build_handlers

ZONE = ZoneInfo("Asia/Almaty")


def _guardian(client: TestClient) -> TestClient:
    r = client.post("/app/en/login", data={"email": "mum@qadam.kz", "password": PASSWORD},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    return client


def _money_world(url: str, ids: dict[str, Any]) -> None:
    """Alice: a free-meal eligibility, 1,200 paid in, one paid meal of 400 (below the school's
    threshold of 1,000: the ledger queues a low-balance notice)."""
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE schools SET timezone = 'Asia/Almaty', low_balance_threshold = 1000"
                     " WHERE id = 's1'")  # fmt: skip
        conn.execute("INSERT INTO meal_categories (school_id, kind, name, price)"
                     " VALUES ('s1', 'paid', 'Paid lunch', 400)")  # fmt: skip
        conn.execute(
            "INSERT INTO meal_eligibility (person_id, category_id, valid_from, valid_until)"
            " VALUES (%s, %s, current_date - 10, current_date + 100)",
            (ids["alice"], ids["category_id"]),
        )
        post(conn, ids["alice"], "top_up", 1200, "cash at the office", None, "t1")
        conn.execute(
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
            " meal_category, occurred_at, day) VALUES ('gate-1', 1, 901, 's1', %s, 3, now(),"
            " (now() AT TIME ZONE 'Asia/Almaty')::date)",
            (ids["alice"],),
        )


def test_money_shows_the_balance_ledger_and_category_and_queues_a_low_balance_notice(
    client: TestClient, world: World, database_url: str
) -> None:
    _money_world(database_url, world.ids)
    with psycopg.connect(database_url) as conn:
        notices = conn.execute(
            "SELECT payload->>'balance', payload->'guardians' FROM outbox"
            " WHERE kind = 'low_balance'"
        ).fetchall()
    assert notices == [("800.00", [world.ids["guardian_id"]])]
    _guardian(client)
    r = client.get("/app/en/money")
    assert r.status_code == 200
    text = re.sub(r"\s+", " ", r.text)
    assert 'id="balance">800.00 KZT<' in text.replace("\xa0", " ")
    assert "below 1,000.00 KZT" in text.replace("\xa0", " ")
    assert "Free" in text and "(free)" in text  # the category and its kind
    assert text.count('class="charge"') == 1 and text.count('class="top_up"') == 1
    assert "cash at the office" in text
    ru = client.get("/app/ru/money").text.replace("\xa0", " ")
    assert "800,00 ₸" in ru and "Баланс питания" in ru


def test_pages_answer_not_found_for_another_child(client: TestClient, world: World) -> None:
    _guardian(client)
    for page in ("money", "stats", "settings"):
        assert client.get(f"/app/en/{page}?child={world.ids['alice']}").status_code == 200
        for other in (world.ids["amir"], world.ids["cara"], 10**12):
            r = client.get(f"/app/en/{page}?child={other}")
            assert r.status_code == 404, (page, other)
            assert "Amir" not in r.text and "Cara" not in r.text
    client.cookies.clear()
    r = client.get("/app/en/money", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/app/en/login"


def test_statistics_count_the_month(client: TestClient, world: World, database_url: str) -> None:
    alice = world.ids["alice"]
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE schools SET timezone = 'Asia/Almaty', day_start = '08:30'"
                     " WHERE id = 's1'")  # fmt: skip
        # 2026-11: in at 08:00, 08:40 (late), 08:20; two meals on the 3rd
        for day, at in (("2026-11-02", "08:00"), ("2026-11-03", "08:40"), ("2026-11-04", "08:20")):
            conn.execute(
                "INSERT INTO attendance (person_id, day, school_id, first_in, passages)"
                " VALUES (%s, %s, 's1', (%s::date + %s::time) AT TIME ZONE 'Asia/Almaty', 1)",
                (alice, day, day, at),
            )
        for seq in (1, 2):
            conn.execute(
                "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
                " meal_category, occurred_at, day) VALUES ('gate-1', 5, %s, 's1', %s, 1,"
                " '2026-11-03 06:00Z', '2026-11-03')",
                (seq, alice),
            )
    _guardian(client)
    r = client.get("/app/en/stats?month=2026-11")
    assert r.status_code == 200
    got = {k: re.search(rf'id="{k}">([^<]*)<', r.text).group(1)  # type: ignore[union-attr]
           for k in ("present", "late", "average", "meals", "month-name")}  # fmt: skip
    assert got == {"present": "3", "late": "1", "average": "08:20", "meals": "2",
                   "month-name": "November 2026"}  # fmt: skip
    # the charts carry the same numbers: 30 days of November, 2 meals on the 3rd
    meals = r.text.split('id="chart-meals"')[1].split("</figure>")[0]
    assert re.findall(r'data-label="3" data-value="(\d+)"', meals) == ["2"]
    assert len(re.findall(r'<rect class="bar"', meals)) == 30
    for bad in ("2026-13", "nonsense", "2999-01"):
        r = client.get(f"/app/en/stats?month={bad}")
        assert r.status_code == 400 and 'role="alert"' in r.text
    assert "месяц" in client.get("/app/ru/stats?month=x").text


def _settings_rows(url: str, user: int) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT row(attendance, meals, low_balance, quiet_from, quiet_to)::text"
            "        FROM notification_settings WHERE user_id = %s),"
            " (SELECT count(*) FROM audit_log WHERE entity = 'notification_settings')",
            (user,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_settings_are_saved_audited_and_bad_quiet_hours_change_nothing(
    client: TestClient, world: World, database_url: str
) -> None:
    mum = world.ids["guardian_id"]
    _guardian(client)
    page = client.get("/app/en/settings")
    assert page.status_code == 200 and 'name="quiet_from"' in page.text
    r = client.post("/app/en/settings", headers=SAME_ORIGIN, follow_redirects=False,
                    data={"attendance": "true", "quiet": "true", "quiet_from": "21:30",
                          "quiet_to": "06:45"})  # fmt: skip
    assert r.status_code == 303 and "saved=settings" in r.headers["location"]
    saved = _settings_rows(database_url, mum)
    assert saved == ("(t,f,f,21:30:00,06:45:00)", 1)
    for bad in ({"quiet": "true", "quiet_from": "25:00", "quiet_to": "06:00"},
                {"quiet": "true", "quiet_from": "07:00", "quiet_to": "07:00"},
                {"quiet": "true", "quiet_from": "", "quiet_to": "06:00"}):  # fmt: skip
        r = client.post("/app/ru/settings", headers=SAME_ORIGIN, data=bad)
        assert r.status_code == 400 and 'role="alert"' in r.text, bad
        assert "Тихие часы" in r.text or "тихие часы" in r.text.lower()
    r = client.post("/app/en/settings", data={"meals": "true"},
                    headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
    assert r.status_code == 403
    assert _settings_rows(database_url, mum) == saved


# -- the push path -------------------------------------------------------------------------------


@pytest.fixture
def push(tmp_path: Path, database_url: str, world: World) -> Any:
    pem = VapidKey.generate_pem()
    key_file = tmp_path / "vapid.pem"
    key_file.write_bytes(pem)
    key = VapidKey(pem, "mailto:ops@qadam.kz")
    with FakePushService() as fake:
        phone = fake.browser(key.application_server_key)
        _subscribe(database_url, world.ids["guardian_id"], phone)
        service = WebPushService(database_url, key, timeout_s=5)
        yield service, phone, key_file
        service.close()


def _subscribe(url: str, user: int, b: Browser) -> None:
    doc = b.subscription_json("en")
    point, secret = subscriptions.decode_keys(doc["keys"]["p256dh"], doc["keys"]["auth"])
    actor = Principal(user_id=user, email="mum@qadam.kz", role="guardian")
    with psycopg.connect(url) as conn:
        subscriptions.upsert(conn, actor, b.endpoint, point, secret, "en")


def _tap(alice: int, reader: str, key: str) -> PushMessage:
    return PushMessage(key, alice, "s1", reader, datetime.now(ZONE).isoformat())


def _set(url: str, user: int, **cols: Any) -> None:
    names = ", ".join(cols)
    marks = ", ".join(["%s"] * len(cols))
    with psycopg.connect(url) as conn:
        conn.execute(f"INSERT INTO notification_settings (user_id, {names}) VALUES (%s, {marks})",
                     (user, *cols.values()))  # fmt: skip


def test_an_opted_out_kind_sends_nothing(push: Any, world: World, database_url: str) -> None:
    service, phone, _ = push
    _set(database_url, world.ids["guardian_id"], meals=False)
    service.send(_tap(world.ids["alice"], "canteen", "tap:gate-1:1:50"))
    assert phone.received == []
    service.send(_tap(world.ids["alice"], "in", "tap:gate-1:1:51"))
    assert [m["reader"] for m in phone.received] == ["in"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM push_held").fetchone() == (0,)


def test_quiet_hours_hold_a_notice_and_send_one_summary_after(
    push: Any, world: World, database_url: str
) -> None:
    service, phone, key_file = push
    now = datetime.now(ZONE).replace(second=0, microsecond=0)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    _set(database_url, world.ids["guardian_id"], quiet_from=start.time(), quiet_to=end.time())
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE schools SET timezone = 'Asia/Almaty' WHERE id = 's1'")
    service.send(_tap(world.ids["alice"], "in", "tap:gate-1:1:60"))
    service.send(_tap(world.ids["alice"], "in", "tap:gate-1:1:60"))  # a retry: held once
    service.send(_tap(world.ids["alice"], "canteen", "tap:gate-1:1:61"))
    assert phone.received == []
    with psycopg.connect(database_url) as conn:
        held = conn.execute(
            "SELECT idempotency_key, release_at FROM push_held ORDER BY id"
        ).fetchall()
        due = conn.execute("SELECT next_attempt_at FROM outbox WHERE kind = 'quiet_summary'"
                           ).fetchall()  # fmt: skip
        assert [k for k, _ in held] == ["tap:gate-1:1:60", "tap:gate-1:1:61"]
        assert {r for _, r in held} == {end} and due == [(end,)]
        # the worker leaves the summary until the quiet hours end
        settings = Settings(database_url=database_url, push_vapid_key_file=str(key_file),
                            push_vapid_subject="mailto:ops@qadam.kz",
                            push_allow_http_loopback=True)  # fmt: skip
        worker = OutboxWorker(database_url, build_handlers(settings), poll_s=0.02, lease_s=30)
        worker.run_once()
        assert phone.received == []
        conn.execute("UPDATE outbox SET next_attempt_at = now() WHERE kind = 'quiet_summary'")
    worker.run_once()
    (summary,) = phone.received
    assert summary["kind"] == "quiet_summary" and summary["count"] == 2
    lines = summary["body"].split("\n")
    assert lines[0] == "Notices during your quiet hours (2):"
    assert lines[1].startswith("Alice Aliyeva arrived at school on ")
    assert lines[2].startswith("Alice Aliyeva had a meal on ")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM push_held WHERE released_at IS NULL"
                            ).fetchone() == (0,)  # fmt: skip


# -- consents ------------------------------------------------------------------------------------


def _consent_state(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT c.id, c.withdrawn_at IS NOT NULL, c.withdrawn_by,"
            " (SELECT count(*) FROM audit_log a WHERE a.entity = 'consents'"
            "  AND a.entity_id = c.id::text AND a.action = 'withdraw')"
            " FROM consents c ORDER BY c.id"
        ).fetchall()


def test_a_consent_is_withdrawn_through_the_api_path_and_audited(
    client: TestClient, world: World, database_url: str
) -> None:
    mum, consent = world.ids["guardian_id"], world.ids["consent_id"]
    with psycopg.connect(database_url) as conn:
        other = conn.execute(
            "INSERT INTO consents (person_id, method, granted_by) VALUES (%s, 'qr', %s)"
            " RETURNING id",
            (world.ids["amir"], world.users["school_admin"]),
        ).fetchone()[0]
    _guardian(client)
    page = client.get("/app/en/settings").text
    assert "face recognition" in page and "given on" in page and "by you" in page
    before = _consent_state(database_url)
    # another child's consent: not found, nothing changed; a cross-site post: refused
    r = client.post(f"/app/en/consents/{other}/withdraw", headers=SAME_ORIGIN)
    assert r.status_code == 404
    r = client.post(
        f"/app/en/consents/{consent}/withdraw", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert r.status_code == 403
    assert _consent_state(database_url) == before
    r = client.post(f"/app/en/consents/{consent}/withdraw", data={"child": world.ids["alice"]},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and "saved=consent" in r.headers["location"]
    assert (consent, True, mum, 1) in _consent_state(database_url)
    again = client.post(f"/app/kk/consents/{consent}/withdraw", headers=SAME_ORIGIN)
    assert again.status_code == 409 and 'role="alert"' in again.text
    shown = client.get(f"/app/en/settings?child={world.ids['alice']}").text
    assert "withdrawn on" in shown and "Withdraw consent" not in shown


def test_statistics_show_the_childs_own_report_lines(
    client: TestClient, world: World, database_url: str
) -> None:
    from datetime import date

    from cloud.reports import service as reports

    with psycopg.connect(database_url) as conn:
        for person, at in ((world.ids["alice"], "08:05"), (world.ids["amir"], "09:15")):
            conn.execute(
                "INSERT INTO attendance (person_id, day, school_id, first_in, passages)"
                " VALUES (%s, '2026-10-05', 's1',"
                " ('2026-10-05'::date + %s::time) AT TIME ZONE 'Asia/Almaty', 1)",
                (person, at),
            )
        conn.execute("UPDATE schools SET timezone = 'Asia/Almaty' WHERE id = 's1'")
        reports.generate(conn, "s1", date(2026, 10, 1), "attendance", None)
    _guardian(client)
    before = client.get("/app/en/stats?month=2026-09").text
    assert 'id="no-reports"' in before
    r = client.get("/app/en/stats?month=2026-10")
    table = r.text.split('id="report-attendance"')[1].split("</table>")[0]
    assert "2026-10-05" in table and "08:05:00" in table
    assert "09:15" not in table  # Amir's line is not Alice's guardian's to see
    assert "(draft)" in r.text


def test_the_ledger_is_paged(client: TestClient, world: World, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for i in range(25):
            post(conn, world.ids["alice"], "top_up", 10 + i, f"payment {i}", None, f"k{i}")
    _guardian(client)
    first = client.get("/app/en/money").text
    assert first.count('class="top_up"') == 20 and "payment 24" in first
    assert "Page 1 of 2" in first and 'rel="next"' in first
    second = client.get("/app/en/money?page=2").text
    assert second.count('class="top_up"') == 5 and "payment 0</span>" in second
    assert 'rel="prev"' in second and 'rel="next"' not in second
    assert client.get("/app/en/money?page=3").status_code == 404
