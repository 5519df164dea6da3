"""Canteen balance pushes (docs/protocol.md "Canteen balances", D15) and the dish on meal
receipts, on the real database: dirty marks from the ledger and the card set, debounce and
version bump at the claim, the snapshot (records by card, floor, per-board watermark), the
chunks, the worker over the real broker, drift, and the ingest storing the reported dish."""

from __future__ import annotations

import binascii
import contextlib
import json
import struct
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from api_world import CARD_ALICE, CARD_AMIR, World, login_all
from cloud_helpers import batch_doc, dumps, topic
from fake_socialwallet import canteen_world, ingest_meals
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from cloud.api.app import create_app
from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import write
from cloud.ledger import post
from cloud.ledger import push as bp
from cloud.settings import Settings
from cloud.workers.balance_push import BalancePush, parse_bal

D = Decimal


@pytest.fixture
def world(database_url: str) -> World:
    return canteen_world(database_url)


def _q(url: str, q: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(q, params).fetchall()


def _dirty(url: str) -> list[str]:
    return [r[0] for r in _q(url, "SELECT school_id FROM balance_dirty ORDER BY 1")]


def _records(data: bytes) -> dict[str, int]:
    return {data[i : i + 8].hex(): struct.unpack_from("<i", data, i + 8)[0]
            for i in range(0, len(data), 12)}  # fmt: skip


def test_marks_debounce_and_claim(database_url: str, world: World) -> None:
    url = database_url
    with psycopg.connect(url, autocommit=True) as conn:
        bp.claim_due(conn, 0)  # the world's setup marked schools (cards were added)
        assert _dirty(url) == []
        # a burst of top-ups and charges of one school: one mark, kept at its first time
        for i in range(3):
            post(conn, world.ids["amir"], "top_up", D(100), "cash", None, f"k-{i}")
        first = _q(url, "SELECT since FROM balance_dirty")[0][0]
        ingest_meals(url, "cant-1", [1, 2], CARD_AMIR)
        assert _dirty(url) == ["s1"]
        assert _q(url, "SELECT since FROM balance_dirty")[0][0] == first
        assert bp.claim_due(conn, 600_000) == []  # not due yet: debounced
        assert bp.claim_due(conn, 0) == ["s1"] and _dirty(url) == []
        v1 = bp.current_version(conn, "s1")
        post(conn, world.ids["amir"], "top_up", D(1), "cash", None, "k-9")
        assert bp.claim_due(conn, 0) == ["s1"]
        assert bp.current_version(conn, "s1") == v1 + 1
        # a new card is a change of what the balances are keyed by
        conn.execute("INSERT INTO cards (card_key, person_id) VALUES ('3333333333333333', %s)",
                     (world.ids["amir"],))  # fmt: skip
        assert _dirty(url) == ["s1"]


def test_snapshot_records_floor_watermark_and_chunks(database_url: str, world: World) -> None:
    url = database_url
    with psycopg.connect(url, autocommit=True) as conn:
        post(conn, world.ids["amir"], "top_up", D("1000.50"), "cash", None, "k-1")
        conn.execute("UPDATE schools SET balance_floor = -300 WHERE id = 's1'")
        ingest_meals(url, "cant-1", [1, 2, 3], CARD_AMIR, boot=4)  # reduced: 3 x 200
        bp.claim_due(conn, 0)
        snap = bp.snapshot(conn, "s1", ["cant-1", "gate-1"])
    recs = _records(snap.records)
    assert recs[CARD_AMIR] == 40050 and recs[CARD_ALICE] == 0
    assert "2222222222222222" not in recs  # Cara is in s3
    assert list(recs) == sorted(recs)
    assert snap.floor == -30000 and snap.version >= 1
    assert snap.marks == {"cant-1": (4, 3), "gate-1": (1, 2)}  # the newest stored event each
    msgs = bp.chunks(snap, 4, 3)
    assert len(msgs) == 1
    h = bp.HEADER.unpack_from(msgs[0])
    assert h == (b"QBC1", 0, 1, snap.version, 4, 3, -30000, snap.count, snap.crc, 0)
    assert binascii.crc32(msgs[0][36:]) == snap.crc and len(msgs[0]) == 36 + 12 * snap.count
    # a big school: 85 records per chunk (1056 bytes, the board's MQTT buffer), offsets in order
    big = bp.Snapshot("s1", 5, 0, b"".join(i.to_bytes(8, "big") + bytes(4) for i in range(200)),
                      0, {})  # fmt: skip
    parts = bp.chunks(big, 1, 1)
    assert [bp.HEADER.unpack_from(p)[9] for p in parts] == [0, 85, 170]
    assert max(len(p) for p in parts) == 1056 and b"".join(p[36:] for p in parts) == big.records
    empty = bp.chunks(bp.Snapshot("s1", 5, 0, b"", 0, {}), 0, 0)
    assert len(empty) == 1 and len(empty[0]) == 36
    assert bp.tiyn(D("-21474836.48")) == -(2**31 - 1) and bp.tiyn(D("650.5")) == 65050


def test_parse_bal() -> None:
    assert parse_bal(b'{"v":1,"online":true,"bal":3}') == 3
    for bad in (b'{"v":1,"online":false,"bal":3}', b'{"v":1,"online":true}', b"[]",
                b'{"v":1,"online":true,"bal":true}', b'{"v":1,"online":true,"bal":-1}',
                b"\xff", b"x" * 5000):  # fmt: skip
        assert parse_bal(bad) is None


def test_dish_reported_by_the_board_is_on_the_receipt(database_url: str, world: World) -> None:
    url = database_url
    dish, foreign = world.ids["dish_id"], world.ids["other_dish_id"]
    doc = batch_doc(dev="cant-1", boot=2, seqs=[1, 2, 3], card=CARD_AMIR, reader="canteen")
    doc["events"][0]["dish"] = dish
    doc["events"][1]["dish"] = foreign  # another school's dish: not stored
    doc["events"][2]["dish"] = "soup"  # malformed: ignored, the event is still stored
    b = decode(topic("qadam", "cant-1"), dumps(doc))
    assert isinstance(b, Batch) and [e.dish for e in b.events] == [dish, foreign, None]
    with psycopg.connect(url, autocommit=True) as conn:
        assert write(conn, [b]).inserted == 3
    rows = _q(url, "SELECT seq, dish_id, price FROM meal_receipts WHERE device_id = 'cant-1'"
                   " ORDER BY seq")  # fmt: skip
    assert rows == [(1, dish, D("350.00")), (2, None, D("500.00")), (3, None, D("500.00"))]
    with TestClient(create_app(Settings(database_url=url, auth_required=True))) as c:
        login_all(c, world, url)
        r = c.get(f"/api/v1/people/{world.ids['amir']}/ledger", headers=world.auth("school_admin"))
        assert r.status_code == 200, r.text
        charges = sorted((e["seq"], e["dish_id"], e["dish"]) for e in r.json()["items"])
        assert charges == [(1, dish, "Плов"), (2, None, None), (3, None, None)]


class _Sub:
    """A paho subscriber collecting the chunks pushed to one board."""

    def __init__(self, host: str, port: int, t: str) -> None:
        self.msgs: list[bytes] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.c.on_connect = lambda c, *_: c.subscribe(t, 1)
        self.c.on_subscribe = lambda *_: self.ready.set()
        self.c.on_message = lambda _c, _u, m: self.msgs.append(bytes(m.payload))
        self.c.connect(host, port)
        self.c.loop_start()
        assert self.ready.wait(10)

    def pushes(self) -> list[dict[str, int]]:
        return [_records(m[36:]) for m in self.msgs]


@contextlib.contextmanager
def _worker(url: str, prefix: str, addr: tuple[str, int]) -> Iterator[BalancePush]:
    s = Settings(database_url=url, mqtt_host=addr[0], mqtt_port=addr[1], topic_prefix=prefix,
                 balance_poll_ms=50, balance_debounce_ms=1500)  # fmt: skip
    w = BalancePush(s)
    w.start()
    try:
        assert w.wait_ready(10)
        yield w
    finally:
        w.stop()


def _until(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_worker_pushes_on_status_and_on_change(
    database_url: str, world: World, topic_prefix: str, mqtt_addr: tuple[str, int]
) -> None:
    url = database_url
    status = {"v": 1, "online": True, "bal": 0}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO device_status (device_id, status, online)"
                     " VALUES ('cant-1', %s, true)", (json.dumps(status),))  # fmt: skip
        bp.claim_due(conn, 0)  # the world's setup marked s1 (cards were added)
    sub = _Sub(*mqtt_addr, f"{topic_prefix}/v1/dev/cant-1/bal")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    pub.connect(*mqtt_addr)
    pub.loop_start()
    try:
        with _worker(url, topic_prefix, mqtt_addr) as worker:
            # a board that runs another version than the school's gets the current balances
            pub.publish(f"{topic_prefix}/v1/dev/cant-1/status", json.dumps(status), 1)
            _until(lambda: len(sub.msgs) >= 1, 10, "the push after the status")
            assert sub.pushes() == [{CARD_ALICE: 0, CARD_AMIR: 0}]
            # a burst of top-ups: one push with the sum, after the debounce
            with psycopg.connect(url, autocommit=True) as conn:
                for i in range(5):
                    post(conn, world.ids["amir"], "top_up", D(100), "cash", None, f"b-{i}")
            _until(lambda: worker.stats["claimed"] >= 1 and len(sub.msgs) >= 2, 10, "a push")
            assert sub.pushes()[1] == {CARD_ALICE: 0, CARD_AMIR: 50000}
            assert _dirty(url) == [] and worker.stats["claimed"] == 1
            assert worker.stats["pushes"] == 2
            with psycopg.connect(url, autocommit=True) as conn:
                assert bp.HEADER.unpack_from(sub.msgs[1])[3] == bp.current_version(conn, "s1")
    finally:
        for c in (pub, sub.c):
            c.loop_stop()
            c.disconnect()


def test_drift_shows_the_balance_version(database_url: str, world: World) -> None:
    url = database_url
    with psycopg.connect(url, autocommit=True) as conn:
        bp.claim_due(conn, 0)
        v = bp.current_version(conn, "s1")
        cant = {"v": 1, "online": True, "bal": v - 1, "bal_err": "crc"}
        gate = {"v": 1, "online": True, "wl": 1}
        conn.execute(
            "INSERT INTO device_status (device_id, status, online)"
            " VALUES ('cant-1', %s, true), ('gate-1', %s, true)",
            (json.dumps(cant), json.dumps(gate)),
        )
    with TestClient(create_app(Settings(database_url=url, auth_required=True))) as c:
        login_all(c, world, url)
        r = c.get("/api/v1/devices/drift", headers=world.auth("school_admin"))
        assert r.status_code == 200, r.text
        items = {i["device_id"]: i for i in r.json()["items"]}
    cant = items["cant-1"]
    assert (cant["bal_running"], cant["bal_latest"], cant["bal_in_sync"], cant["bal_err"]) == (
        v - 1,
        v,
        False,
        "crc",
    )
    assert items["gate-1"]["bal_latest"] is None and items["gate-1"]["bal_in_sync"] is None
