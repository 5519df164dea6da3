"""Webhook deliveries (D29-I): rows written in the ingest's transaction, one per subscriber and
run of taps, only for schools with subscribers; each delivery signed and checked by a real
receiver on loopback; retried after 503, dead-lettered on 400; a board offline and an approved
report delivered too; exactly one effect per delivery across a SIGKILLed worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from api_world import CARD_ALICE, CARD_AMIR, World
from fake_receiver import FakeReceiver
from fake_socialwallet import CARD_CARA
from webhook_world import (
    allow_loopback,
    api,
    ingest,
    subscribe,
    wait_done,
    webhook_rows,
    worker,
)

from cloud.provisioning.whitelists import record_status

REPO = Path(__file__).resolve().parents[2]


def test_taps_enqueue_a_row_per_subscriber_and_run_only_where_someone_listens(
    database_url: str, world: World
) -> None:
    with api(database_url, world) as c:
        allow_loopback(c, world)
        a = subscribe(c, world, "http://127.0.0.1:9/a", ["passage"])
        b = subscribe(c, world, "http://127.0.0.1:9/b", ["meal", "passage", "device_offline"])
    assert ingest(database_url, "gate-1", [1, 2, 3], CARD_ALICE, "in") == 3
    assert ingest(database_url, "cant-1", [1, 2], CARD_AMIR, "canteen") == 2
    assert ingest(database_url, "cant-3", [1, 2], CARD_CARA, "canteen") == 2  # s3: nobody
    assert ingest(database_url, "gate-1", [1, 2, 3], CARD_ALICE, "in") == 0  # retransmission
    rows = {key: payload for key, payload, *_ in webhook_rows(database_url)}
    assert set(rows) == {
        f"wh:{a['id']}:taps:gate-1:5:1",
        f"wh:{b['id']}:taps:gate-1:5:1",
        f"wh:{b['id']}:taps:cant-1:5:1",
    }
    gate_b = rows[f"wh:{b['id']}:taps:gate-1:5:1"]
    assert gate_b == {"subscription_id": b["id"], "school_id": "s1", "event": "taps",
                      "kinds": ["passage"], "device_id": "gate-1", "boot": 5,
                      "runs": [[1, 3]]}  # fmt: skip
    assert rows[f"wh:{b['id']}:taps:cant-1:5:1"]["kinds"] == ["meal"]


def test_webhook_rows_are_in_the_ingest_transaction(database_url: str, world: World) -> None:
    """A webhook row that cannot be written fails the whole flush: no event, no note, no row
    (and the board gets no ack, so it sends again); the rows stand or fall with the events."""
    with api(database_url, world) as c:
        allow_loopback(c, world)
        subscribe(c, world, "http://127.0.0.1:9/a", ["passage"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_webhook() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'no webhook rows today'; END $$;"
            " CREATE TRIGGER refuse BEFORE INSERT ON outbox FOR EACH ROW"
            " WHEN (NEW.kind = 'webhook') EXECUTE FUNCTION refuse_webhook()"
        )
    with pytest.raises(psycopg.errors.RaiseException):
        ingest(database_url, "gate-1", [1, 2], CARD_ALICE, "in")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE boot = 5").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        conn.execute("DROP TRIGGER refuse ON outbox")
    assert ingest(database_url, "gate-1", [1, 2], CARD_ALICE, "in") == 2  # sent again: stored
    assert [r[0] for r in webhook_rows(database_url)] == ["wh:1:taps:gate-1:5:1"]


def test_signed_deliveries_retry_after_503_and_a_400_is_a_dead_letter(
    database_url: str, world: World
) -> None:
    with FakeReceiver() as rx, api(database_url, world) as c:
        allow_loopback(c, world)
        ok = subscribe(c, world, rx.url("/ok"), ["passage", "meal"])
        flaky = subscribe(c, world, rx.url("/flaky"), ["passage"])
        broken = subscribe(c, world, rx.url("/broken"), ["meal"])
        for sub, path in ((ok, "/ok"), (flaky, "/flaky"), (broken, "/broken")):
            rx.secrets[path] = sub["secret"]
        rx.fail_first["/flaky"] = (503, 2)
        rx.always["/broken"] = 400
        ingest(database_url, "gate-1", [1, 2, 300], CARD_ALICE, "in")  # two runs: 1-2, 300
        ingest(database_url, "cant-1", [5], CARD_AMIR, "canteen")
        n = 2 + 1 + 2 + 1  # ok: 2 gate runs + 1 meal; flaky: 2 gate runs; broken: 1 meal
        w = worker(database_url)
        w.start()
        try:
            wait_done(database_url, n)
        finally:
            w.stop()
        r = c.get("/api/v1/schools/s1/webhooks", headers=world.auth("school_admin"))
        listed = {h["id"]: h for h in r.json()}
        assert [listed[s["id"]]["delivered"] for s in (ok, flaky, broken)] == [3, 2, 0]
        assert listed[broken["id"]]["failed"] == 1 and listed[ok["id"]]["waiting"] == 0
        assert "HTTP 400" in listed[broken["id"]]["last_error"]
    assert rx.bad == []  # every request carried a valid signature within the window
    rows = {key: (delivered, dead, attempts, err)
            for key, _p, delivered, dead, attempts, err in webhook_rows(database_url)}  # fmt: skip
    for key, (delivered, dead, attempts, err) in rows.items():
        if key.startswith(f"wh:{broken['id']}:"):
            assert dead is not None and delivered is None and attempts == 1, (key, rows[key])
            assert err is not None and "HTTP 400" in err
        elif key.startswith(f"wh:{flaky['id']}:"):
            assert delivered is not None and attempts == 3, (key, rows[key])  # 503, 503, 200
        else:
            assert delivered is not None and attempts == 1, (key, rows[key])
    assert rx.answers[503] == 4 and rx.answers[400] == 1
    ok_events = sorted((e["type"], e["event_id"]) for e in rx.events("/ok"))
    assert ok_events == [("meal", "cant-1:5:5"), ("passage", "gate-1:5:1"),
                         ("passage", "gate-1:5:2"), ("passage", "gate-1:5:300")]  # fmt: skip
    passage = next(e for e in rx.events("/ok") if e["event_id"] == "gate-1:5:1")
    assert passage["person_id"] == world.ids["alice"] and passage["direction"] == "in"
    assert passage["person_kind"] == "student" and passage["occurred_at"] is not None
    assert "card" not in str(passage) and "Alice" not in str(rx.effects)  # no names, no cards
    assert sum(rx.duplicates.values()) == 0


@pytest.mark.parametrize(("status", "dead"), [(429, False), (408, False), (301, True),
                                             (410, True), (500, False)])  # fmt: skip
def test_which_answers_are_retried_and_which_are_final(
    database_url: str, world: World, status: int, dead: bool
) -> None:
    with FakeReceiver() as rx, api(database_url, world) as c:
        allow_loopback(c, world)
        sub = subscribe(c, world, rx.url("/x"), ["passage"])
        rx.secrets["/x"] = sub["secret"]
        rx.always["/x"] = status
        ingest(database_url, "gate-1", [1], CARD_ALICE, "in")
        w = worker(database_url)
        assert w.run_once() == 1  # one claim, one attempt
        w.stop()
    [(_key, _p, delivered, dead_at, attempts, err)] = webhook_rows(database_url)
    assert delivered is None and attempts == 1 and f"HTTP {status}" in str(err)
    assert (dead_at is not None) == dead


def test_a_board_going_offline_and_an_approved_report_are_delivered(
    database_url: str, world: World
) -> None:
    with FakeReceiver() as rx, api(database_url, world) as c:
        allow_loopback(c, world)
        sub = subscribe(c, world, rx.url("/ops"), ["device_offline", "report_approved"])
        rx.secrets["/ops"] = sub["secret"]
        with psycopg.connect(database_url) as conn:  # as the whitelist worker stores statuses
            assert record_status(conn, "gate-1", {"v": 1, "online": True}, False)
            assert record_status(conn, "gate-1", {"v": 1, "online": False}, False)  # last will
            assert record_status(conn, "gate-1", {"v": 1, "online": False}, True)  # no change
        month = {"month": "2025-10", "kind": "attendance"}
        h = world.auth("school_admin")
        r = c.post("/api/v1/reports/schools/s1/generate", json=month, headers=h)
        assert r.status_code in (200, 201), r.text
        r = c.post("/api/v1/reports/schools/s1/approve",
                   json={**month, "acknowledge_anomalies": True}, headers=h)  # fmt: skip
        assert r.status_code == 200, r.text
        again = {**month, "acknowledge_anomalies": True}
        c.post("/api/v1/reports/schools/s1/approve", json=again, headers=h)  # twice: a no-op
        w = worker(database_url)
        w.start()
        try:
            wait_done(database_url, 2)
        finally:
            w.stop()
    assert rx.bad == []
    got = {e["type"]: e for e in rx.events("/ops")}
    assert set(got) == {"device_offline", "report_approved"}
    assert got["device_offline"]["device_id"] == "gate-1"
    assert got["report_approved"]["month"] == "2025-10"
    assert got["report_approved"]["kind"] == "attendance"


def test_a_deleted_subscriber_or_a_host_taken_off_the_list_gets_nothing(
    database_url: str, world: World
) -> None:
    with FakeReceiver() as rx, api(database_url, world) as c:
        allow_loopback(c, world)
        gone = subscribe(c, world, rx.url("/gone"), ["passage"])
        ingest(database_url, "gate-1", [1], CARD_ALICE, "in")
        r = c.delete(f"/api/v1/webhooks/{gone['id']}", headers=world.auth("school_admin"))
        assert r.status_code == 204
        kept = subscribe(c, world, rx.url("/kept"), ["passage"])
        rx.secrets["/kept"] = kept["secret"]
        ingest(database_url, "gate-1", [300], CARD_ALICE, "in")
        r = c.put("/api/v1/schools/s1/webhook-hosts", json={"hosts": ["hooks.example.kz"]},
                  headers=world.auth("district_authority"))  # fmt: skip
        assert r.status_code == 200
        w = worker(database_url)
        w.start()
        try:
            wait_done(database_url, 2)
        finally:
            w.stop()
    errors = sorted(str(r[5]) for r in webhook_rows(database_url))
    assert all(r[3] is not None for r in webhook_rows(database_url))  # both dead letters
    assert "deleted" in errors[1] and "allowlist" in errors[0], errors
    assert sum(rx.answers.values()) == 0  # nothing was sent


# -- a worker process killed mid-delivery ----------------------------------------------------


def _spawn(url: str, wid: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        QADAM_DATABASE_URL=url,
        QADAM_WEBHOOK_ALLOW_HTTP_LOOPBACK="1",
        QADAM_WEBHOOK_TIMEOUT_S="5",
        QADAM_OUTBOX_WORKER_ID=wid,
        QADAM_OUTBOX_BATCH="4",
        QADAM_OUTBOX_POLL_S="0.05",
        QADAM_OUTBOX_LEASE_S="2",
        QADAM_OUTBOX_MAX_ATTEMPTS="50",
        QADAM_OUTBOX_BACKOFF_BASE_S="0.02",
        QADAM_OUTBOX_BACKOFF_MAX_S="0.3",
    )
    return subprocess.Popen([sys.executable, "-m", "cloud.workers.outbox"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


@pytest.mark.slow
def test_exactly_one_effect_per_delivery_across_a_killed_worker_process(
    database_url: str, world: World
) -> None:
    n = 24
    with FakeReceiver() as rx, api(database_url, world) as c:
        allow_loopback(c, world)
        sub = subscribe(c, world, rx.url("/acs"), ["passage"])
        rx.secrets["/acs"] = sub["secret"]
        rx.hold_s = 0.3  # the effect is recorded, the answer not yet sent
        ingest(database_url, "gate-1", [1 + 256 * i for i in range(n)], CARD_ALICE, "in")
        assert len(webhook_rows(database_url)) == n  # a run each
        procs = [_spawn(database_url, "p1")]
        try:
            deadline = time.monotonic() + 30
            while len(rx.effects) < n // 4:
                assert time.monotonic() < deadline, rx.answers
                assert procs[0].poll() is None, procs[0].stderr.read() if procs[0].stderr else ""
                time.sleep(0.01)
            procs[0].send_signal(signal.SIGKILL)  # its newest delivery is held: in flight
            procs[0].wait(10)
            procs = [_spawn(database_url, "p1"), _spawn(database_url, "p2")]
            wait_done(database_url, n, timeout=60)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    assert rx.bad == []
    rows = webhook_rows(database_url)
    assert all(r[2] is not None for r in rows)  # every row delivered, none dead
    assert set(rx.effects) == {r[0] for r in rows}  # one effect per delivery id
    seen = Counter(e["event_id"] for e in rx.events())
    assert len(seen) == n and set(seen.values()) == {1}  # every tap told exactly once
    assert sum(rx.duplicates.values()) >= 1  # the killed delivery came again, deduplicated
    assert max(r[4] for r in rows) >= 2
    assert all(p.returncode == 0 for p in procs)  # SIGTERM: a clean stop
