"""Web Push: subscriptions through the API (checked, owned, replaceable) and delivery from the
outbox through a fake push service that verifies VAPID and decrypts like a browser."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_world import World, add_user, build, login_all
from cloud_helpers import CARD_A, Seed, batch_doc, dumps, topic
from fake_push import Browser, FakePushService
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import write
from cloud.push.webpush import VapidKey
from cloud.settings import Settings
from cloud.workers.outbox import OutboxWorker, build_handlers


@pytest.fixture
def vapid_file(tmp_path: Path) -> Path:
    path = tmp_path / "vapid.pem"
    path.write_bytes(VapidKey.generate_pem())
    return path


@pytest.fixture
def push_service() -> Iterator[FakePushService]:
    with FakePushService() as svc:
        yield svc


def _settings(url: str, vapid_file: Path | None, **kw: Any) -> Settings:
    opts: dict[str, Any] = dict(database_url=url, auth_required=True,
                                push_allow_http_loopback=True, push_timeout_s=5)  # fmt: skip
    if vapid_file is not None:
        opts.update(push_vapid_key_file=str(vapid_file), push_vapid_subject="mailto:ops@qadam.kz")
    opts.update(kw)
    return Settings(**opts)


@pytest.fixture
def api(database_url: str, vapid_file: Path) -> Iterator[tuple[TestClient, World, str]]:
    w = build(database_url)
    with TestClient(create_app(_settings(database_url, vapid_file))) as c:
        login_all(c, w, database_url)
        key = c.get("/api/v1/push/key", headers=w.auth("guardian")).json()
        yield c, w, key["application_server_key"]


def _worker(url: str, settings: Settings) -> OutboxWorker:
    return OutboxWorker(url, build_handlers(settings), batch=20, poll_s=0.02, lease_s=30,
                        max_attempts=5, backoff_base_s=0.01, backoff_max_s=0.05)  # fmt: skip


def _outbox(url: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, delivered_at IS NOT NULL, attempts, last_error FROM outbox"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _due_now(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE outbox SET next_attempt_at = now() WHERE delivered_at IS NULL")


# -- subscriptions -------------------------------------------------------------------------------


def test_subscribe_list_replace_and_delete_own(
    api: tuple[TestClient, World, str], push_service: FakePushService, database_url: str
) -> None:
    c, w, key = api
    b = push_service.browser(key)
    r = c.post("/api/v1/me/push-subscriptions", json=b.subscription_json("kk"),
               headers=w.auth("guardian"))  # fmt: skip
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["endpoint"] == b.endpoint and sub["lang"] == "kk"
    mine = c.get("/api/v1/me/push-subscriptions", headers=w.auth("guardian")).json()
    assert [s["id"] for s in mine] == [sub["id"]]
    # Another account logs in on the same browser: the endpoint moves, it is not duplicated.
    r = c.post("/api/v1/me/push-subscriptions", json=b.subscription_json("en"),
               headers=w.auth("school_admin"))  # fmt: skip
    assert r.status_code == 201 and r.json()["id"] == sub["id"]
    assert c.get("/api/v1/me/push-subscriptions", headers=w.auth("guardian")).json() == []
    # Someone else's subscription cannot be deleted; one's own can.
    r = c.delete(f"/api/v1/me/push-subscriptions/{sub['id']}", headers=w.auth("guardian"))
    assert r.status_code == 404
    r = c.delete(f"/api/v1/me/push-subscriptions/{sub['id']}", headers=w.auth("school_admin"))
    assert r.status_code == 204
    assert c.get("/api/v1/me/push-subscriptions", headers=w.auth("school_admin")).json() == []
    # Each change is audited (the refused delete is not), naming the push service, not the URL.
    g, s = w.users["guardian"], w.users["school_admin"]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT actor_id, action, school_id, before->>'user_id', after->>'user_id',"
            " coalesce(after, before)->>'push_service',"
            " coalesce(before::text, '') || coalesce(after::text, '')"
            " FROM audit_log WHERE entity = 'push_subscriptions' AND entity_id = %s ORDER BY id",
            (str(sub["id"]),),
        ).fetchall()
    assert [r[:5] for r in rows] == [
        (g, "create", None, None, str(g)),
        (s, "update", "s1", str(g), str(s)),
        (s, "delete", "s1", str(s), None),
    ]
    assert {r[5] for r in rows} == {"127.0.0.1"}
    assert not any(b.endpoint in (r[6] or "") for r in rows)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"endpoint": "https://evil.example.com/push/x"}, "endpoint"),
        ({"endpoint": "http://fcm.googleapis.com/fcm/send/x"}, "endpoint"),  # not https
        ({"endpoint": "https://user:pw@fcm.googleapis.com/x"}, "endpoint"),
        ({"endpoint": "https://fcm.googleapis.com.evil.com/x"}, "endpoint"),
        ({"endpoint": "http://10.0.0.5/push/x"}, "endpoint"),  # http only for loopback
        ({"keys": {"p256dh": "BAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "keys.p256dh"),
        ({"keys": {"p256dh": "B" + "A" * 86, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "keys.p256dh"),
        ({"keys": {"p256dh": None, "auth": "x"}}, "keys"),
        ({"lang": "de"}, "lang"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_subscriptions_are_refused_and_store_nothing(
    api: tuple[TestClient, World, str],
    push_service: FakePushService,
    database_url: str,
    change: dict[str, Any],
    field: str,
) -> None:
    c, w, key = api
    body = push_service.browser(key).subscription_json() | change
    r = c.post("/api/v1/me/push-subscriptions", json=body, headers=w.auth("guardian"))
    assert r.status_code == 422, r.text
    assert field.split(".")[0] in r.text
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM push_subscriptions").fetchone() == (0,)


def test_auth_secret_of_wrong_length_is_refused(
    api: tuple[TestClient, World, str], push_service: FakePushService
) -> None:
    c, w, key = api
    body = push_service.browser(key).subscription_json()
    body["keys"]["auth"] = "AAAA"
    r = c.post("/api/v1/me/push-subscriptions", json=body, headers=w.auth("guardian"))
    assert r.status_code == 422 and "auth must be 16 bytes" in r.text


def test_vapid_key_is_404_when_push_is_not_configured(database_url: str) -> None:
    w = build(database_url)
    with TestClient(create_app(_settings(database_url, None))) as c:
        login_all(c, w, database_url)
        r = c.get("/api/v1/push/key", headers=w.auth("guardian"))
    assert r.status_code == 404 and "not configured" in r.text


# -- delivery ------------------------------------------------------------------------------------


def _guardians(url: str, person: int, n: int) -> list[int]:
    with psycopg.connect(url) as conn:
        ids = [add_user(conn, f"parent{i}@qadam.kz", "guardian") for i in range(n)]
        for g in ids:
            conn.execute(
                "INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)",
                (g, person),
            )
    return ids


def _subscribe(url: str, user: int, b: Browser, lang: str) -> None:
    from cloud.auth.principal import Principal
    from cloud.push import subscriptions

    doc = b.subscription_json(lang)
    point, secret = subscriptions.decode_keys(doc["keys"]["p256dh"], doc["keys"]["auth"])
    actor = Principal(user_id=user, email=f"user{user}@qadam.kz", role="guardian")
    with psycopg.connect(url) as conn:
        subscriptions.upsert(conn, actor, b.endpoint, point, secret, lang)


def _low_balance(url: str, person: int, key: str, balance: str = "350.00") -> None:
    payload = {"v": 1, "person_id": person, "school_id": "s1", "balance": balance,
               "below_floor": False}  # fmt: skip
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO outbox (kind, idempotency_key, payload) VALUES ('low_balance', %s, %s)",
            (key, json.dumps(payload)),
        )


def test_tap_reaches_each_guardian_encrypted_in_their_language(
    database_url: str, seed: Seed, vapid_file: Path, push_service: FakePushService
) -> None:
    settings = _settings(database_url, vapid_file)
    key = VapidKey(vapid_file.read_bytes(), "mailto:ops@qadam.kz").application_server_key
    g1, g2 = _guardians(database_url, seed.alice, 2)
    b1, b2 = push_service.browser(key), push_service.browser(key)
    _subscribe(database_url, g1, b1, "en")
    _subscribe(database_url, g2, b2, "kk")
    now = int(time.time()) - 60  # a fresh tap (an old one gets a summary: test_push_notices)
    batch = decode(topic("qadam", "gate-1"), dumps(batch_doc(seqs=[1], card=CARD_A, t=now)))
    assert isinstance(batch, Batch)
    with psycopg.connect(database_url, autocommit=True) as conn:
        write(conn, [batch])
        conn.execute("UPDATE schools SET timezone = 'Asia/Almaty' WHERE id = 's1'")
        occurred = conn.execute("SELECT occurred_at FROM events").fetchone()
    assert occurred is not None
    _worker(database_url, settings).run_once()
    from zoneinfo import ZoneInfo

    local = occurred[0].astimezone(ZoneInfo("Asia/Almaty"))
    en = local.strftime("on %Y-%m-%d at %H:%M")
    kk = local.strftime("%d.%m.%Y, %H:%M")
    assert [m["body"] for m in b1.received] == [f"Alice Aliyeva arrived at school {en}"]
    assert [m["body"] for m in b2.received] == [f"Alice Aliyeva мектепке келді, {kk}"]
    assert b1.received[0]["kind"] == "parent_notification" and b1.received[0]["reader"] == "in"
    assert _outbox(database_url)["taps:gate-1:7:1"][0] is True


def _ok_and_flaky_phones(
    url: str, seed: Seed, vapid_file: Path, push_service: FakePushService, lang: str
) -> tuple[Settings, Any, Any]:
    """Two guardians of Alice, each with a phone; the second phone's next push fails (503)."""
    settings = _settings(url, vapid_file)
    key = VapidKey(vapid_file.read_bytes(), "mailto:ops@qadam.kz").application_server_key
    g1, g2 = _guardians(url, seed.alice, 2)
    ok, flaky = push_service.browser(key), push_service.browser(key)
    _subscribe(url, g1, ok, lang)
    _subscribe(url, g2, flaky, lang)
    push_service.fail[flaky.token] = 1
    return settings, ok, flaky


def test_retry_goes_only_to_the_subscription_that_failed(
    database_url: str, seed: Seed, vapid_file: Path, push_service: FakePushService
) -> None:
    settings, ok, flaky = _ok_and_flaky_phones(database_url, seed, vapid_file, push_service, "ru")
    _low_balance(database_url, seed.alice, "low_balance:1:2026-11-28")
    worker = _worker(database_url, settings)
    worker.run_once()
    delivered, attempts, error = _outbox(database_url)["low_balance:1:2026-11-28"]
    assert not delivered and attempts == 1 and "503" in error
    _due_now(database_url)
    worker.run_once()
    assert _outbox(database_url)["low_balance:1:2026-11-28"][0] is True
    assert push_service.statuses(ok.token) == [201]  # not sent twice
    assert push_service.statuses(flaky.token) == [503, 201]
    assert ok.received == flaky.received
    assert ok.received[0]["body"] == "Alice Aliyeva: баланс питания 350.00 ₸"


def test_a_run_of_taps_retried_reaches_each_phone_once_per_tap(
    database_url: str, seed: Seed, vapid_file: Path, push_service: FakePushService
) -> None:
    # One outbox row carries both taps (D18); the first attempt fails for one phone at the first
    # tap, so the whole row is retried: each phone still gets each tap exactly once.
    settings, ok, flaky = _ok_and_flaky_phones(database_url, seed, vapid_file, push_service, "en")
    doc = batch_doc(seqs=[1, 2], card=CARD_A, t=int(time.time()) - 60)  # fresh: pushed one by one
    doc["events"][1]["reader"] = "out"
    batch = decode(topic("qadam", "gate-1"), dumps(doc))
    assert isinstance(batch, Batch)
    with psycopg.connect(database_url, autocommit=True) as conn:
        write(conn, [batch])
    worker = _worker(database_url, settings)
    worker.run_once()
    assert _outbox(database_url)["taps:gate-1:7:1"][:2] == (False, 1)
    _due_now(database_url)
    worker.run_once()
    assert _outbox(database_url)["taps:gate-1:7:1"][:2] == (True, 2)
    assert push_service.statuses(ok.token) == [201, 201]
    assert push_service.statuses(flaky.token) == [503, 201, 201]
    assert [m["reader"] for m in ok.received] == ["in", "out"]
    assert ok.received == flaky.received


def test_gone_subscription_is_retired_and_not_used_again(
    database_url: str, seed: Seed, vapid_file: Path, push_service: FakePushService
) -> None:
    settings = _settings(database_url, vapid_file)
    key = VapidKey(vapid_file.read_bytes(), "mailto:ops@qadam.kz").application_server_key
    (g,) = _guardians(database_url, seed.alice, 1)
    b = push_service.browser(key)
    _subscribe(database_url, g, b, "en")
    push_service.gone.add(b.token)
    _low_balance(database_url, seed.alice, "low_balance:1:d1")
    worker = _worker(database_url, settings)
    worker.run_once()
    assert _outbox(database_url)["low_balance:1:d1"][0] is True  # nothing left to retry
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT gone_at IS NOT NULL FROM push_subscriptions").fetchone() == (
            True,
        )
    _low_balance(database_url, seed.alice, "low_balance:1:d2")
    worker.run_once()
    assert push_service.statuses(b.token) == [410]  # the second message did not try it


def test_a_key_the_browser_did_not_subscribe_with_is_refused(
    database_url: str, seed: Seed, vapid_file: Path, push_service: FakePushService, tmp_path: Path
) -> None:
    """The fake really checks VAPID: a message signed with another platform key gets 403, and the
    subscription is not retired for it (a configuration error, not a dead browser)."""
    other = tmp_path / "other.pem"
    other.write_bytes(VapidKey.generate_pem())
    settings = _settings(database_url, other)
    key = VapidKey(vapid_file.read_bytes(), "mailto:ops@qadam.kz").application_server_key
    (g,) = _guardians(database_url, seed.alice, 1)
    b = push_service.browser(key)
    _subscribe(database_url, g, b, "en")
    _low_balance(database_url, seed.alice, "low_balance:1:k")
    _worker(database_url, settings).run_once()
    assert push_service.statuses(b.token) == [403] and b.received == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT gone_at FROM push_subscriptions").fetchone() == (None,)
        assert conn.execute("SELECT status FROM push_deliveries").fetchall() == [(403,)]


def test_report_reminder_reaches_the_school_admins(
    database_url: str, seed: Seed, vapid_file: Path, push_service: FakePushService
) -> None:
    settings = _settings(database_url, vapid_file)
    key = VapidKey(vapid_file.read_bytes(), "mailto:ops@qadam.kz").application_server_key
    with psycopg.connect(database_url) as conn:
        admin = add_user(conn, "head@s1.kz", "school_admin", school_id="s1")
        other = add_user(conn, "head@s2.kz", "school_admin", school_id="s2")
        conn.execute(
            "INSERT INTO outbox (kind, idempotency_key, payload) VALUES ('report_reminder',"
            " 'report_reminder:s1:2026-10', %s)",
            (json.dumps({"school_id": "s1", "month": "2026-10", "deadline": "2026-11-05"}),),
        )
    mine, theirs = push_service.browser(key), push_service.browser(key)
    _subscribe(database_url, admin, mine, "en")
    _subscribe(database_url, other, theirs, "en")
    _worker(database_url, settings).run_once()
    assert [m["body"] for m in mine.received] == [
        "Reports for 2026-10 are not approved yet; due 2026-11-05"
    ]
    assert theirs.received == []


def test_settings_refuse_a_key_file_that_is_not_a_p256_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ValueError, match="not a readable P-256 private key"):
        Settings(push_vapid_key_file=str(bad), push_vapid_subject="mailto:ops@qadam.kz")
    with pytest.raises(ValueError, match="needs push_vapid_subject"):
        Settings(push_vapid_key_file=str(bad))
    with pytest.raises(ValueError):
        Settings(push_vapid_key_file=str(bad), push_vapid_subject="ops@qadam.kz")  # no scheme


def test_push_key_command_creates_once_and_never_replaces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tools.cli import main

    path = tmp_path / "vapid.pem"
    assert main(["push-key", str(path)]) == 0
    first = capsys.readouterr().out
    assert "new VAPID key written" in first and path.stat().st_mode & 0o777 == 0o600
    pem = path.read_bytes()
    assert main(["push-key", str(path)]) == 0
    again = capsys.readouterr().out
    assert "existing key kept" in again and path.read_bytes() == pem
    public = VapidKey(pem, "mailto:ops@qadam.kz").application_server_key
    assert f"applicationServerKey: {public}" in first and public in again
    bad = tmp_path / "bad.pem"
    bad.write_text("junk")
    assert main(["push-key", str(bad)]) == 2
    assert "not a P-256 private key" in capsys.readouterr().err and bad.read_text() == "junk"
