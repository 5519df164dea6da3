"""Social Wallet: receipts -> outbox -> HTTP connector -> fake state system, with faults,
dead letters, reconciliation and the ledger API (docs/social-wallet.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_world import CARD_ALICE, CARD_AMIR, CARD_BOB, World, login_all
from fake_socialwallet import BIN_S1, CARD_CARA, FakeSocialWallet, canteen_world, ingest_meals
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.outbox.contract import Retry
from cloud.settings import Settings
from cloud.socialwallet.connector import Accepted, MealRecord, Reason, Rejected, TransientError
from cloud.socialwallet.handler import SocialWalletHandler
from cloud.socialwallet.http import HttpConnector
from cloud.socialwallet.reconcile import reconcile
from cloud.workers.outbox import OutboxWorker

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 0.3  # client timeout; the fake's "timeout" sleeps past it
# for calls that are not meant to time out: a loaded CI machine once took over 0.3 s to answer
# a reconcile's lookup, and the test counted it as unknown
PATIENT_S = 10.0


@pytest.fixture
def world(database_url: str) -> World:
    return canteen_world(database_url)


@pytest.fixture
def fake() -> Iterator[FakeSocialWallet]:
    with FakeSocialWallet(sleep_s=TIMEOUT_S * 3) as f:
        yield f


def _worker(url: str, fake: FakeSocialWallet, wid: str, **kw: Any) -> OutboxWorker:
    opts: dict[str, Any] = dict(
        batch=5, poll_s=0.05, lease_s=2.0, max_attempts=50, backoff_base_s=0.02,
        backoff_max_s=0.3,
    )  # fmt: skip
    opts.update(kw)
    conn = HttpConnector(fake.url, timeout_s=TIMEOUT_S)
    return OutboxWorker(url, [SocialWalletHandler(conn)], worker_id=wid, **opts)


def _ledger(url: str) -> dict[str, tuple[str, str | None, Any, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, state, reference, reasons, attempts FROM sw_deliveries"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def _wait_final(url: str, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE state IN ('accepted', 'rejected', 'dead')),"
                " count(*) FROM sw_deliveries"
            ).fetchone()
        assert row is not None
        if row[0] == n:
            return
        time.sleep(0.1)
    raise AssertionError(f"not final in time: {row[0]} of {row[1]}, ledger {_ledger(url)}")


def _assert_exactly_once(url: str, fake: FakeSocialWallet, n: int) -> None:
    ledger = _ledger(url)
    assert len(ledger) == n
    with psycopg.connect(url) as conn:
        receipts = conn.execute(
            "SELECT 'meal:' || device_id || ':' || boot || ':' || seq FROM meal_receipts"
        ).fetchall()
        pending = conn.execute(
            "SELECT count(*) FROM outbox WHERE kind = 'social_wallet'"
            " AND (delivered_at IS NULL OR dead_at IS NOT NULL)"
        ).fetchone()
    assert {r[0] for r in receipts} == set(ledger)
    assert pending == (0,)
    for key, (state, ref, _reasons, _att) in ledger.items():
        assert state == "accepted", (key, ledger[key])
        assert ref == fake.records[key].reference, key  # the reference the fake issued
        assert fake.accepted_posts[key] == 1, key  # created once at the receiver
    assert fake.accepted_keys() == set(ledger)


# -- the trigger: receipts enqueue in the ingest transaction ---------------------------------


def test_meal_receipt_enqueues_one_record_in_the_ingest_transaction(
    database_url: str, world: World
) -> None:
    assert ingest_meals(database_url, "cant-1", [1, 2], CARD_ALICE) == 2
    assert ingest_meals(database_url, "cant-1", [3], CARD_AMIR) == 1
    assert ingest_meals(database_url, "cant-1", [1, 2, 3], CARD_ALICE) == 0  # retransmission
    ingest_meals(database_url, "gate-1", [50], CARD_ALICE)  # a canteen tap on another device
    with psycopg.connect(database_url) as conn:
        # a denied canteen tap and a turnstile tap enqueue nothing
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
            " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at)"
            " VALUES ('cant-1', 1, 99, 's1', %s, %s, 'tap', 'canteen', 'denied', 'allergen',"
            " now(), true, 1, now())",
            (world.ids["alice"], CARD_ALICE),
        )
        rows = conn.execute(
            "SELECT idempotency_key, payload FROM outbox WHERE kind = 'social_wallet'"
            " ORDER BY idempotency_key"
        ).fetchall()
        ledger = conn.execute(
            "SELECT idempotency_key, state, meal_category, school_id FROM sw_deliveries"
            " ORDER BY idempotency_key"
        ).fetchall()
    assert [r[0] for r in rows] == [
        "meal:cant-1:1:1", "meal:cant-1:1:2", "meal:cant-1:1:3", "meal:gate-1:1:50",
    ]  # fmt: skip
    alice = rows[0][1]
    assert alice["school"] == {"id": "s1", "bin": BIN_S1}
    assert alice["pupil"] == {"person_id": world.ids["alice"], "iin": "120304500123"}
    assert alice["meal_category"] == "free"
    assert (alice["price"], alice["pupil_paid"], alice["subsidy"]) == ("500.00", "0.00", "500.00")
    assert alice["occurred_at"].endswith("Z") and alice["source"]["seq"] == 1
    amir = rows[2][1]
    assert amir["meal_category"] == "reduced" and amir["pupil"]["iin"] is None
    assert (amir["price"], amir["pupil_paid"], amir["subsidy"]) == ("500.00", "200.00", "300.00")
    MealRecord.from_payload(alice)  # what the worker sends parses
    assert [(k, s, c, sc) for k, s, c, sc in ledger][2] == ("meal:cant-1:1:3", "pending",
                                                            "reduced", "s1")  # fmt: skip
    assert {s for _, s, _, _ in ledger} == {"pending"}


def test_a_failed_ingest_transaction_enqueues_nothing(database_url: str, world: World) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO meal_receipts VALUES ('cant-1', 1, 1, 's1', %s, 1, now(), current_date)",
            (world.ids["alice"],),
        )
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM sw_deliveries").fetchone() == (0,)


# -- the HTTP connector against the fake -----------------------------------------------------


def _record(**over: Any) -> MealRecord:
    payload: dict[str, Any] = {
        "v": 1, "school": {"id": "s1", "bin": None}, "pupil": {"person_id": 1, "iin": None},
        "occurred_at": "2025-10-09T08:53:20Z", "day": "2025-10-09", "meal_category": "free",
        "dish": None, "price": "500.00", "pupil_paid": "0.00", "subsidy": "500.00",
        "currency": "KZT", "source": {"device_id": "cant-1", "boot": 1, "seq": 1},
    }  # fmt: skip
    payload.update(over)
    return MealRecord.from_payload(payload)


def test_http_connector_speaks_the_contract() -> None:
    with FakeSocialWallet(
        fail_keys={"k-fail": 1},
        timeout_keys={"k-slow": 1},
        reject_keys={"k-rej": [{"code": "pupil_not_eligible", "message": "no benefit"}]},
        sleep_s=TIMEOUT_S * 3,
        token="s3cret",
    ) as fake:
        c = HttpConnector(fake.url, token="s3cret", timeout_s=TIMEOUT_S)
        first = c.submit(_record(), "k-ok")
        assert isinstance(first, Accepted) and not first.duplicate
        again = c.submit(_record(), "k-ok")  # 409: the original reference
        assert again == Accepted(first.reference, duplicate=True)
        assert c.status("k-ok") == Accepted(first.reference)
        assert c.status("k-never") is None
        # a key reused for a different record is refused, not silently deduplicated
        reused = c.submit(_record(meal_category="paid"), "k-ok")
        assert isinstance(reused, Rejected) and reused.reasons[0].code == "idempotency_key_reused"
        # 422 with reasons, remembered
        rej = c.submit(_record(), "k-rej")
        assert rej == Rejected((Reason("pupil_not_eligible", "no benefit"),))
        assert c.status("k-rej") == rej
        missing = c.submit(_record(price=None, pupil={"person_id": None, "iin": None}), "k-bad")
        assert isinstance(missing, Rejected)
        assert {r.code for r in missing.reasons} == {"price_missing", "pupil_unknown"}
        # 500: retry, and the retry is accepted
        with pytest.raises(TransientError, match="HTTP 500"):
            c.submit(_record(), "k-fail")
        assert isinstance(c.submit(_record(), "k-fail"), Accepted)
        # timeout: the fake stored it, the answer was lost; the retry gets 409 + the reference
        with pytest.raises(TransientError, match="timeout"):
            c.submit(_record(), "k-slow")
        late = c.submit(_record(), "k-slow")
        assert late == Accepted(fake.records["k-slow"].reference, duplicate=True)
        assert fake.accepted_posts["k-slow"] == 1
        # the Idempotency-Key header is what the fake dedupes on, and credentials are checked
        bad = HttpConnector(fake.url, token="wrong", timeout_s=TIMEOUT_S)
        with pytest.raises(TransientError, match="HTTP 401"):
            bad.submit(_record(), "k-x")
        c.close()
        bad.close()
    # nobody listening: transient
    with pytest.raises(TransientError, match="transport"):
        HttpConnector(fake.url, timeout_s=TIMEOUT_S).submit(_record(), "k-down")


# -- delivery under faults -------------------------------------------------------------------


def test_every_receipt_is_accepted_exactly_once_despite_faults_and_a_restart(
    database_url: str, world: World
) -> None:
    n = 60
    ingest_meals(database_url, "cant-1", range(1, 41), CARD_ALICE)
    ingest_meals(database_url, "cant-3", range(1, 21), CARD_CARA)
    with FakeSocialWallet(fail_rate=0.15, timeout_rate=0.15, sleep_s=TIMEOUT_S * 3) as fake:
        w1 = _worker(database_url, fake, "w1")
        w2 = _worker(database_url, fake, "w2")
        w1.start()
        w2.start()
        deadline = time.monotonic() + 20
        while fake.outcomes["202"] + fake.outcomes["timeout"] < n // 3:  # mid-run
            assert time.monotonic() < deadline, fake.outcomes
            time.sleep(0.02)
        w1.stop()  # restart: whatever it had claimed comes back after the lease
        w1 = _worker(database_url, fake, "w1b")
        w1.start()
        try:
            _wait_final(database_url, n)
        finally:
            w1.stop()
            w2.stop()
        assert fake.outcomes["500"] > 0 and fake.outcomes["timeout"] > 0, fake.outcomes
        assert fake.outcomes["409"] > 0  # lost answers were retried and deduplicated
        _assert_exactly_once(database_url, fake, n)
    ledger = _ledger(database_url)
    assert max(att for _, _, _, att in ledger.values()) > 1


def _spawn(url: str, fake: FakeSocialWallet, wid: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        QADAM_DATABASE_URL=url,
        QADAM_SOCIALWALLET_URL=fake.url,
        QADAM_SOCIALWALLET_TIMEOUT_S=str(TIMEOUT_S),
        QADAM_OUTBOX_WORKER_ID=wid,
        QADAM_OUTBOX_BATCH="5",
        QADAM_OUTBOX_POLL_S="0.05",
        QADAM_OUTBOX_LEASE_S="2",
        QADAM_OUTBOX_MAX_ATTEMPTS="50",
        QADAM_OUTBOX_BACKOFF_BASE_S="0.02",
        QADAM_OUTBOX_BACKOFF_MAX_S="0.3",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cloud.workers.outbox"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_two_worker_processes_one_killed_mid_run(database_url: str, world: World) -> None:
    n = 40
    ingest_meals(database_url, "cant-1", range(1, n + 1), CARD_AMIR)
    with FakeSocialWallet(fail_rate=0.15, timeout_rate=0.15, sleep_s=TIMEOUT_S * 3) as fake:
        procs = [_spawn(database_url, fake, "p1"), _spawn(database_url, fake, "p2")]
        try:
            deadline = time.monotonic() + 30
            while len(fake.accepted_keys()) < n // 4:
                assert time.monotonic() < deadline, fake.outcomes
                assert procs[0].poll() is None, procs[0].stderr.read() if procs[0].stderr else ""
                time.sleep(0.02)
            procs[0].send_signal(signal.SIGKILL)  # mid-delivery, claimed rows in hand
            procs[0].wait(10)
            procs[0] = _spawn(database_url, fake, "p1")  # same id, as docs/ingest.md advises
            _wait_final(database_url, n)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        _assert_exactly_once(database_url, fake, n)
    assert procs[1].returncode == 0  # SIGTERM: a clean stop


def test_duplicate_409_counts_as_accepted_with_the_original_reference(
    database_url: str, world: World, fake: FakeSocialWallet
) -> None:
    ingest_meals(database_url, "cant-1", [1], CARD_ALICE)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT payload FROM outbox WHERE kind = 'social_wallet'").fetchone()
    assert row is not None
    body = MealRecord.from_payload(row[0]).to_json("meal:cant-1:1:1")
    ref = fake.accept_directly("meal:cant-1:1:1", body)  # e.g. sent by an earlier deployment
    w = _worker(database_url, fake, "w")
    assert w.run_once() == 1
    assert fake.outcomes["409"] == 1 and fake.accepted_posts["meal:cant-1:1:1"] == 0
    assert _ledger(database_url)["meal:cant-1:1:1"][:2] == ("accepted", ref)


def test_rejected_and_dead_deliveries_show_reasons_through_the_api(
    database_url: str, world: World
) -> None:
    ingest_meals(database_url, "cant-1", [1, 2, 3, 4], CARD_ALICE)
    ingest_meals(database_url, "cant-3", [1], CARD_CARA)
    reasons = [{"code": "pupil_not_eligible", "message": "no free meal on this date"}]
    with FakeSocialWallet(
        reject_keys={"meal:cant-1:1:2": reasons, "meal:cant-1:1:3": reasons},
        fail_keys={"meal:cant-1:1:4": 1000},
        sleep_s=TIMEOUT_S * 3,
    ) as fake:
        w = _worker(database_url, fake, "w", max_attempts=3, backoff_base_s=0.01,
                    backoff_max_s=0.02)  # fmt: skip
        w.start()
        try:
            _wait_final(database_url, 5)
        finally:
            w.stop()
        assert fake.posts["meal:cant-1:1:4"] == 3  # N attempts, then the dead letter
        assert fake.posts["meal:cant-1:1:2"] == 1  # a rejection is final: never resent
    with psycopg.connect(database_url) as conn:
        dead = conn.execute(
            "SELECT attempts, dead_at IS NOT NULL, delivered_at, last_error FROM outbox"
            " WHERE idempotency_key = 'meal:cant-1:1:4'"
        ).fetchone()
    assert dead is not None and dead[:3] == (3, True, None) and "HTTP 500" in dead[3]

    app = create_app(Settings(database_url=database_url, auth_required=True))
    with TestClient(app) as client:
        login_all(client, world, database_url)
        h = world.auth("school_admin")
        r = client.get("/api/v1/social-wallet/deliveries?state=rejected", headers=h)
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == 2 and page["limit"] == 100 and page["offset"] == 0
        assert {i["idempotency_key"] for i in page["items"]} == {
            "meal:cant-1:1:2", "meal:cant-1:1:3"}  # fmt: skip
        assert page["items"][0]["reasons"] == reasons and page["items"][0]["reference"] is None
        r = client.get("/api/v1/social-wallet/deliveries?state=dead", headers=h)
        [d] = r.json()["items"]
        assert d["idempotency_key"] == "meal:cant-1:1:4" and d["attempts"] == 3
        assert "HTTP 500" in d["last_error"]

        month = "2025-10"  # T0 is 2025-10-09
        r = client.get(f"/api/v1/social-wallet/summary?month={month}&school=s1", headers=h)
        assert r.status_code == 200, r.text
        s = r.json()
        assert s["total"] == 4
        assert s["by_state"] == {"pending": 0, "sent": 0, "accepted": 1, "rejected": 2, "dead": 1}
        assert s["reasons"] == [{"code": "pupil_not_eligible", "count": 2}]
        assert len(s["errors"]) == 1 and s["errors"][0]["count"] == 1
        r = client.get("/api/v1/social-wallet/summary?month=2025-11&school=s1", headers=h)
        assert r.json()["total"] == 0

        # scope: the school admin of s1 sees s1 only; s3 is "not found"
        r = client.get("/api/v1/social-wallet/deliveries", headers=h)
        assert {i["school_id"] for i in r.json()["items"]} == {"s1"}
        assert client.get("/api/v1/social-wallet/deliveries?school=s3", headers=h).status_code \
            == 404  # fmt: skip
        # the district authority of D1 (s1, s2) does not see s3 (district D2) either
        hd = world.auth("district_authority")
        r = client.get(f"/api/v1/social-wallet/summary?month={month}", headers=hd)
        assert r.json()["total"] == 4
        assert client.get("/api/v1/social-wallet/summary?month=2025-10&school=s3",
                          headers=hd).status_code == 404  # fmt: skip
        # the platform admin sees everything; filters and pages
        hp = world.auth("platform_admin")
        r = client.get(f"/api/v1/social-wallet/summary?month={month}", headers=hp)
        assert r.json()["total"] == 5 and r.json()["by_state"]["accepted"] == 2
        r = client.get("/api/v1/social-wallet/deliveries?limit=2&offset=4", headers=hp)
        assert r.json()["total"] == 5 and len(r.json()["items"]) == 1
        r = client.get(
            "/api/v1/social-wallet/deliveries?date_from=2025-10-10&date_to=2025-10-31", headers=hp
        )
        assert r.json()["total"] == 0
        r = client.get(
            "/api/v1/social-wallet/deliveries?date_from=2025-10-09&date_to=2025-10-09", headers=hp
        )
        assert r.json()["total"] == 5
        bad = client.get(
            "/api/v1/social-wallet/deliveries?date_from=2025-10-10&date_to=2025-10-09", headers=hp
        )
        assert bad.status_code == 422
        assert client.get("/api/v1/social-wallet/summary?month=2025-13", headers=hp).status_code \
            == 422  # fmt: skip
        # roles without the ledger
        for role in ("canteen_operator", "technician", "guardian"):
            r = client.get("/api/v1/social-wallet/deliveries", headers=world.auth(role))
            assert r.status_code == 403, role


# -- reconciliation ----------------------------------------------------------------------------


def test_reconcile_fixes_a_delivery_whose_response_was_lost(
    database_url: str, world: World
) -> None:
    ingest_meals(database_url, "cant-1", [1, 2], CARD_ALICE)
    lost, never = "meal:cant-1:1:1", "meal:cant-1:1:2"
    with FakeSocialWallet(
        timeout_keys={lost: 1000}, fail_keys={never: 1000}, sleep_s=TIMEOUT_S * 3
    ) as fake:
        # one attempt each: the first is stored by the fake but the answer is lost, the second
        # never reaches it; both become dead letters
        w = _worker(database_url, fake, "w", max_attempts=1)
        assert w.run_once() == 2
        ledger = _ledger(database_url)
        assert ledger[lost][0] == ledger[never][0] == "dead"
        assert ledger[lost][1] is None
        assert lost in fake.accepted_keys()

        with psycopg.connect(database_url, autocommit=True) as conn:
            report = reconcile(conn, HttpConnector(fake.url, timeout_s=PATIENT_S))
            assert (report.checked, report.accepted, report.unknown) == (2, 1, 1)
            out = conn.execute(
                "SELECT idempotency_key, delivered_at IS NOT NULL, dead_at IS NOT NULL"
                " FROM outbox WHERE kind = 'social_wallet' ORDER BY idempotency_key"
            ).fetchall()
            assert [tuple(r) for r in out] == [(lost, True, False), (never, False, True)]
            # a second pass changes nothing for the fixed one
            again = reconcile(conn, HttpConnector(fake.url, timeout_s=PATIENT_S))
            assert (again.checked, again.accepted) == (1, 0)
        ledger = _ledger(database_url)
        assert ledger[lost][:2] == ("accepted", fake.records[lost].reference)
        assert ledger[never][0] == "dead"
        assert fake.accepted_posts[lost] == 1


def test_reconcile_finds_a_stale_sent_delivery_of_a_dead_worker(
    database_url: str, world: World, fake: FakeSocialWallet
) -> None:
    ingest_meals(database_url, "cant-1", [1], CARD_ALICE)
    key = "meal:cant-1:1:1"
    w = _worker(database_url, fake, "w", lease_s=3600)
    [item] = w.claim()  # claimed and marked sent; the worker "dies" after the POST went out
    fake.accept_directly(key, MealRecord.from_payload(item.payload).to_json(key))
    assert _ledger(database_url)[key][0] == "sent"
    with psycopg.connect(database_url, autocommit=True) as conn:
        c = HttpConnector(fake.url, timeout_s=PATIENT_S)
        assert reconcile(conn, c, grace_s=60).checked == 0  # within the grace period
        conn.execute("UPDATE sw_deliveries SET updated_at = now() - interval '2 minutes'")
        assert reconcile(conn, c, grace_s=60).accepted == 1
        row = conn.execute(
            "SELECT delivered_at IS NOT NULL FROM outbox WHERE idempotency_key = %s", (key,)
        ).fetchone()
    assert row == (True,)  # the outbox will not send it again
    assert _ledger(database_url)[key][:2] == ("accepted", fake.records[key].reference)
    # the late outcome of the "dead" worker (its POST timed out) cannot downgrade it
    w._store(item, Retry("timeout: ReadTimeout"))
    assert _ledger(database_url)[key][:2] == ("accepted", fake.records[key].reference)
    assert w.run_once() == 0


# -- no meal lost to configuration order (issue #13 item 10, D24-F) ----------------------------


def _api(database_url: str, world: World) -> TestClient:
    client = TestClient(create_app(Settings(database_url=database_url, auth_required=True)))
    login_all(client, world, database_url)
    return client


def _one(url: str, q: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        return conn.execute(q, params).fetchone()


def _run_until_final(url: str, fake: FakeSocialWallet, n: int) -> None:
    w = _worker(url, fake, "w")
    w.start()
    try:
        _wait_final(url, n)
    finally:
        w.stop()


def _audits(url: str, entity: str) -> list[tuple[str, Any, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT entity_id, before, after FROM audit_log WHERE entity = %s ORDER BY id",
            (entity,),
        ).fetchall()
    return [(str(r[0]), r[1], r[2]) for r in rows]


def test_bin_is_twelve_digits_with_the_iin_check_digit() -> None:
    from cloud.domain import kz_bin
    from cloud.imports import iin

    assert kz_bin.check_digit is iin.check_digit  # one implementation of the checksum
    for good in ("940140000385", "990140004654", "140440031745", kz_bin.make("2409", 7)):
        assert kz_bin.problem(good) is None, good
    bad = {
        "940140000386": "check digit",  # a typo in the last digit
        "940140000358": "check digit",  # two digits swapped
        "94014000038": "12 digits",
        "9401400003851": "12 digits",
        "94014000038a": "12 digits",
        "٩٤٠١٤٠٠٠٠٣٨٥": "12 digits",  # Arabic-Indic digits: isdigit() but not ASCII
        "941340000385": "month",
        "940170000385": "digit 5",
        "940149000385": "digit 6",
    }
    for value, why in bad.items():
        problem = kz_bin.problem(value)
        assert problem is not None and why in problem, (value, problem)
        with pytest.raises(ValueError, match=why):
            kz_bin.check(value)


def test_school_bin_is_set_through_the_api_validated_and_audited(
    database_url: str, world: World
) -> None:
    ingest_meals(database_url, "cant-3", [1], CARD_CARA)  # s3 has no BIN yet: a waiting record
    good = "990140004654"
    with _api(database_url, world) as client:
        hp = world.auth("platform_admin")
        r = client.patch("/api/v1/schools/s3", json={"bin": "990140004655"}, headers=hp)
        assert r.status_code == 422 and "BIN check digit is wrong" in r.text, r.text
        r = client.patch("/api/v1/schools/s3", json={"bin": "99014000465"}, headers=hp)
        assert r.status_code == 422 and "exactly 12 digits" in r.text, r.text
        assert _one(database_url, "SELECT bin FROM schools WHERE id = 's3'") == (None,)
        r = client.patch("/api/v1/schools/s3", json={"bin": good}, headers=hp)
        assert r.status_code == 200 and r.json()["bin"] == good, r.text
        assert client.get("/api/v1/schools/s3", headers=hp).json()["bin"] == good
        # a school admin sets their own school's BIN; another school's is "not found"
        hs = world.auth("school_admin")
        r = client.patch("/api/v1/schools/s1", json={"bin": "140440031745"}, headers=hs)
        assert r.status_code == 200 and r.json()["bin"] == "140440031745", r.text
        assert client.patch("/api/v1/schools/s3", json={"bin": good}, headers=hs).status_code \
            == 404  # fmt: skip
        r = client.post(
            "/api/v1/schools", json={"id": "s7", "name": "Seven", "bin": "1"}, headers=hp
        )
        assert r.status_code == 422 and "12 digits" in r.text
    # the record that was waiting (never sent) carries the BIN now; the change is audited
    payload = _one(database_url, "SELECT payload FROM outbox WHERE idempotency_key = %s",
                   ("meal:cant-3:1:1",))[0]  # fmt: skip
    assert payload["school"] == {"id": "s3", "bin": good}
    audits = [a for a in _audits(database_url, "schools") if a[0] == "s3"]
    assert audits and audits[-1][2]["bin"] == good


def test_meal_served_before_prices_is_repriced_from_history_and_resent(
    database_url: str, world: World
) -> None:
    """s2 has no meal categories: Bob's meals are rejected price_missing. The operator enters
    the price (650, then changes it to 700 today) and resends: the meals (9 Oct) are priced 650
    from the history, accepted once each, and the report's rollup and the ledger agree."""
    from cloud.domain import registry

    with psycopg.connect(database_url) as conn:
        registry.register_device(conn, "cant-2", "s2", "canteen", "canteen", "pn532")
    keys = ["meal:cant-2:1:1", "meal:cant-2:1:2"]
    ingest_meals(database_url, "cant-2", [1, 2], CARD_BOB)
    with FakeSocialWallet(sleep_s=TIMEOUT_S * 3) as fake, _api(database_url, world) as client:
        _run_until_final(database_url, fake, 2)
        ledger = _ledger(database_url)
        assert [ledger[k][0] for k in keys] == ["rejected", "rejected"]
        assert ledger[keys[0]][2] == [{"code": "price_missing", "message": "price is required"}]
        rollup = "SELECT price, paid, quantity FROM meal_rollup WHERE school_id = 's2'"
        assert _one(database_url, rollup) == (-1, -1, 2)  # the report: unpriced

        hp = world.auth("platform_admin")
        body = {"school_id": "s2", "kind": "paid", "name": "Paid", "price": "650"}
        r = client.post("/api/v1/meal-categories", json=body, headers=hp)
        assert r.status_code == 201, r.text
        r = client.patch(f"/api/v1/meal-categories/{r.json()['id']}", json={"price": "700"},
                         headers=hp)  # fmt: skip
        assert r.status_code == 200, r.text

        bulk = {"school": "s2", "reason": "price_missing"}
        r = client.post("/api/v1/social-wallet/resend", json=bulk, headers=hp)
        assert r.status_code == 200, r.text
        assert r.json() == {"resent": keys, "repriced": keys, "skipped": [], "more": False}
        # idempotent: the same request again finds nothing to resend; one key: skipped
        r = client.post("/api/v1/social-wallet/resend", json=bulk, headers=hp)
        assert r.json()["resent"] == []
        r = client.post(f"/api/v1/social-wallet/deliveries/{keys[0]}/resend", headers=hp)
        assert r.json()["skipped"] == [{"idempotency_key": keys[0], "state": "pending"}]
        assert _one(database_url, rollup) == (650, 650, 2)  # priced as at the meal

        _run_until_final(database_url, fake, 2)
        for k in keys:
            assert _ledger(database_url)[k][:2] == ("accepted", fake.records[k].reference)
            assert fake.accepted_posts[k] == 1
            sent = fake.records[k].body
            assert (sent["price"], sent["pupil_paid"], sent["subsidy"]) == (
                "650.00", "650.00", "0.00")  # fmt: skip
        r = client.get("/api/v1/social-wallet/deliveries?school=s2", headers=hp)
        assert {i["resends"] for i in r.json()["items"]} == {1}
    # the family share is charged once per meal, now that there is a price
    charges = _one(
        database_url,
        "SELECT count(*), sum(amount) FROM ledger_entries WHERE person_id = %s"
        " AND source LIKE 'meal:cant-2:%%'",
        (world.ids["bob"],),
    )
    assert charges == (2, -1300)
    resends = _audits(database_url, "sw_deliveries")
    assert [a[0] for a in resends] == keys
    assert resends[0][1]["state"] == "rejected" and resends[0][1]["price"] is None
    assert resends[0][2]["price"] == "650.00" and resends[0][2]["repriced"] is True
    assert resends[0][2]["resent"] is True
    assert len(_audits(database_url, "sw_resend")) == 2


def test_resending_a_dead_record_that_had_arrived_makes_no_second_record(
    database_url: str, world: World
) -> None:
    """A dead letter whose POST had in fact been stored (the answer was lost) is resent after
    the BIN changed, so the rebuilt body differs: the receiver refuses the reused key, the
    worker asks the status endpoint and takes the record it holds."""
    arrived, lost = "meal:cant-1:1:1", "meal:cant-1:1:2"
    ingest_meals(database_url, "cant-1", [1, 2], CARD_ALICE)
    with (
        FakeSocialWallet(
            timeout_keys={arrived: 1}, fail_keys={lost: 1}, sleep_s=TIMEOUT_S * 3
        ) as fake,
        _api(database_url, world) as client,
    ):
        w = _worker(database_url, fake, "w", max_attempts=1)
        assert w.run_once() == 2
        assert [_ledger(database_url)[k][0] for k in (arrived, lost)] == ["dead", "dead"]
        original = fake.records[arrived].reference

        hs = world.auth("school_admin")
        r = client.patch("/api/v1/schools/s1", json={"bin": "140440031745"}, headers=hs)
        assert r.status_code == 200, r.text
        # roles and scope: a district authority reads only; s3's admin does not see s1
        assert (
            client.post(
                f"/api/v1/social-wallet/deliveries/{arrived}/resend",
                headers=world.auth("district_authority"),
            ).status_code
            == 403
        )
        assert client.post("/api/v1/social-wallet/deliveries/meal:nope:1:1/resend",
                           headers=hs).status_code == 404  # fmt: skip
        r = client.post("/api/v1/social-wallet/resend", json={"school": "s1", "state": "dead"},
                        headers=hs)  # fmt: skip
        assert r.status_code == 200 and r.json()["resent"] == [arrived, lost], r.text
        assert r.json()["repriced"] == []  # priced already: prices never change on a resend

        _run_until_final(database_url, fake, 2)
    ledger = _ledger(database_url)
    assert ledger[arrived][:2] == ("accepted", original)  # the record it already held
    assert ledger[lost][:2] == ("accepted", fake.records[lost].reference)
    assert fake.accepted_posts[arrived] == 1 and fake.accepted_posts[lost] == 1
    assert fake.records[lost].body["school"]["bin"] == "140440031745"
    assert fake.outcomes["422"] == 1  # the reused key, answered from the status endpoint


def test_other_schools_deliveries_are_not_found_for_resend(database_url: str, world: World) -> None:
    ingest_meals(database_url, "cant-3", [1], CARD_CARA)
    with _api(database_url, world) as client:
        hs = world.auth("school_admin")  # of s1
        r = client.post("/api/v1/social-wallet/deliveries/meal:cant-3:1:1/resend", headers=hs)
        assert r.status_code == 404 and "meal:cant-3:1:1" in r.text
        r = client.post("/api/v1/social-wallet/resend", json={"school": "s3"}, headers=hs)
        assert r.status_code == 404
        r = client.post("/api/v1/social-wallet/resend", json={"school": "s1", "state": "dead",
                        "reason": "price_missing"}, headers=hs)  # fmt: skip
        assert r.status_code == 422
    assert _ledger(database_url)["meal:cant-3:1:1"][0] == "pending"
    assert _audits(database_url, "sw_deliveries") == []


def test_a_missing_connector_shows_in_the_api(database_url: str, world: World) -> None:
    from cloud.outbox.contract import BaseHandler

    ingest_meals(database_url, "cant-1", [1, 2], CARD_ALICE)
    ingest_meals(database_url, "cant-3", [1], CARD_CARA)
    with _api(database_url, world) as client:
        hs, hp = world.auth("school_admin"), world.auth("platform_admin")
        r = client.get("/api/v1/social-wallet/status", headers=hs)
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["connector"] == "not_configured" and st["workers"] == 0
        assert st["waiting"] == {"pending": 2, "sent": 0, "dead": 0, "rejected": 0}  # s1 only
        assert st["oldest_waiting_at"] is not None and "no outbox worker" in st["detail"]
        assert client.get("/api/v1/social-wallet/status", headers=hp).json()["waiting"][
            "pending"] == 3  # fmt: skip

        class Notices(BaseHandler):
            kind = "parent_notification"

        # a worker without a connector (QADAM_SOCIALWALLET_URL unset) runs: still not configured
        OutboxWorker(database_url, [Notices()], worker_id="plain").heartbeat()
        st = client.get("/api/v1/social-wallet/status", headers=hs).json()
        assert st["connector"] == "not_configured" and st["workers"] == 1
        assert "QADAM_SOCIALWALLET_URL" in st["detail"]
        with FakeSocialWallet() as fake:
            _worker(database_url, fake, "sw").heartbeat()
        st = client.get("/api/v1/social-wallet/status", headers=hs).json()
        assert st["connector"] == "configured" and st["workers"] == 2
        with psycopg.connect(database_url) as conn:  # a worker not seen for 10 minutes
            conn.execute("UPDATE outbox_workers SET seen_at = now() - interval '10 minutes'"
                         " WHERE worker_id = 'sw'")  # fmt: skip
        assert client.get("/api/v1/social-wallet/status", headers=hs).json()["connector"] \
            == "not_configured"  # fmt: skip
        for role in ("canteen_operator", "technician", "guardian"):
            r = client.get("/api/v1/social-wallet/status", headers=world.auth(role))
            assert r.status_code == 403, role


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worker_without_connector_says_so_at_start_and_in_its_metrics(
    database_url: str, world: World
) -> None:
    import urllib.request

    ingest_meals(database_url, "cant-1", [1, 2, 3], CARD_ALICE)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QADAM_")}
    env.update(QADAM_DATABASE_URL=database_url, QADAM_OUTBOX_METRICS_PORT=str(port),
               QADAM_OUTBOX_POLL_S="0.05", QADAM_OUTBOX_WORKER_ID="nosw")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloud.workers.outbox"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        for line in proc.stderr:  # the process logs until it is stopped
            lines.append(line)
            if "outbox worker started" in line:
                break
        # keep reading: a full stderr pipe would block the worker's logging, and so its exit
        threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True).start()
        loud = [x for x in lines if "SOCIAL WALLET CONNECTOR NOT CONFIGURED" in x]
        assert loud, "".join(lines)
        assert '"level":"error"' in loud[0] and "3 meal records wait" in loud[0]
        text = ""
        for _ in range(100):  # the HTTP server is up before the worker loop starts
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                break
            except OSError:
                time.sleep(0.05)
        assert "qadam_socialwallet_connector_configured 0.0" in text, text
        assert 'qadam_socialwallet_deliveries{state="pending"} 3.0' in text
        assert 'qadam_socialwallet_deliveries{state="rejected"} 0.0' in text
        st = _one(database_url, "SELECT kinds FROM outbox_workers WHERE worker_id = 'nosw'")
        assert st is not None and "social_wallet" not in st[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    assert _one(database_url, "SELECT count(*) FROM outbox_workers") == (0,)  # said goodbye


def test_metrics_of_a_worker_with_a_connector(database_url: str, world: World) -> None:
    from prometheus_client import CollectorRegistry

    from cloud.socialwallet.status import SocialWalletCollector

    ingest_meals(database_url, "cant-1", [1, 2], CARD_ALICE)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE sw_deliveries SET state = 'rejected', confirmed_at = now(),"
                     " reasons = '[{\"code\": \"price_missing\"}]' WHERE seq = 2")  # fmt: skip
    reg = CollectorRegistry()
    reg.register(SocialWalletCollector(database_url, configured=True))
    assert reg.get_sample_value("qadam_socialwallet_connector_configured") == 1
    assert reg.get_sample_value("qadam_socialwallet_deliveries", {"state": "pending"}) == 1
    assert reg.get_sample_value("qadam_socialwallet_deliveries", {"state": "rejected"}) == 1
    assert (reg.get_sample_value("qadam_socialwallet_oldest_waiting_seconds") or -1) >= 0
