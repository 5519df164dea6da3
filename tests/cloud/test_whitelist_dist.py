"""Whitelist distribution: the shared test vector, versioned compile on change (dirty flag set by
triggers), delta-or-snapshot planning, status storage, the API (scoped), and the worker against
the real broker with a paho client playing the board."""

from __future__ import annotations

import json
import queue
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from api_world import World, build, login_all
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from cloud.api.app import create_app
from cloud.domain import registry
from cloud.domain.whitelist import (
    CHUNK_HEADER,
    DELTA,
    SNAPSHOT,
    build_delta,
    build_whitelist,
)
from cloud.provisioning import whitelists as wls
from cloud.settings import Settings
from cloud.workers.whitelist_push import WhitelistPush

VECTOR = Path(__file__).resolve().parents[1] / "vectors" / "whitelist_v1.json"


# -- the shared vector (the firmware side: tests/firmware/cases/test_fw_wl_vector.py) ----------


def test_cloud_builders_match_the_shared_vector() -> None:
    v = json.loads(VECTOR.read_text())
    w1 = build_whitelist(1, [tuple(e) for e in v["v1"]["entries"]])
    w2 = build_whitelist(2, [tuple(e) for e in v["v2"]["entries"]])
    assert w1.hex() == v["v1"]["hex"]
    assert w2.hex() == v["v2"]["hex"]
    assert build_delta(w1, w2).hex() == v["delta_1_2"]["hex"]
    assert len(VECTOR.read_bytes()) < 4096  # small enough for the 64K VM


# -- compile on change ---------------------------------------------------------------------


def _conn(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def _dirty(conn: psycopg.Connection[Any]) -> list[str]:
    return sorted(wls.dirty_schools(conn))


def test_compile_versions_only_real_changes(database_url: str) -> None:
    w = build(database_url)
    with _conn(database_url) as conn:
        assert _dirty(conn) == ["s1", "s2", "s3"]  # the world's cards and people
        first = wls.compile_school(conn, "s1", keep=3)
        assert first is not None and first.version == 1 and first.count == 2
        assert first.data == registry.compile_whitelist(conn, "s1", 1)
        assert _dirty(conn) == ["s2", "s3"]
        assert wls.compile_school(conn, "s1", keep=3) is None  # nothing changed
        # a name change does not touch the whitelist; an allergen change does
        conn.execute("UPDATE people SET full_name = 'A. A.' WHERE id = %s", (w.ids["alice"],))
        assert "s1" not in _dirty(conn)
        conn.execute("UPDATE people SET allergen_mask = 64 WHERE id = %s", (w.ids["alice"],))
        assert "s1" in _dirty(conn)
        v2 = wls.compile_school(conn, "s1", keep=3)
        assert v2 is not None and v2.version == 2 and v2.count == 2
        # marking dirty without a real change compiles to "no new version"
        conn.execute("SELECT whitelist_mark_dirty('s1')")
        assert wls.compile_school(conn, "s1", keep=3) is None
        assert "s1" not in _dirty(conn)
        # revoking a card, adding one: new versions; only the newest 3 are kept
        registry.revoke_card(conn, "1111111111111111")
        assert wls.compile_school(conn, "s1", keep=3).version == 3  # type: ignore[union-attr]
        registry.add_card(conn, w.ids["amir"], "2222222222220000")
        v4 = wls.compile_school(conn, "s1", keep=3)
        assert v4 is not None and v4.version == 4 and v4.count == 2
        kept = [r[0] for r in conn.execute(
            "SELECT version FROM whitelists WHERE school_id = 's1' ORDER BY version")]  # fmt: skip
        assert kept == [2, 3, 4]
        # another school's change does not mark s1
        registry.revoke_card(conn, "fedcba9876543210")
        assert _dirty(conn) == ["s2", "s3"]


def _status(conn: psycopg.Connection[Any], dev: str, doc: dict[str, Any]) -> None:
    assert wls.record_status(conn, dev, doc, retained=False)


def _chunks_payload(msgs: list[bytes]) -> tuple[int, int, int, bytes]:
    """(kind, version, base, object) reassembled from chunk messages."""
    heads = [CHUNK_HEADER.unpack_from(m, 0) for m in msgs]
    assert [h[3] for h in heads] == list(range(len(msgs)))
    assert {h[4] for h in heads} == {len(msgs)}
    data = b"".join(m[CHUNK_HEADER.size :] for m in msgs)
    assert len(data) == heads[0][8]
    return heads[0][1], heads[0][6], heads[0][7], data


def test_plan_push_delta_snapshot_and_in_sync(database_url: str) -> None:
    build(database_url)
    with _conn(database_url) as conn:
        assert wls.plan_push(conn, "gate-1") == (None, "no_whitelist")
        assert wls.plan_push(conn, "nope") == (None, "unknown_device")
        v1 = wls.compile_school(conn, "s1", keep=5)
        assert v1 is not None
        # never seen: snapshot
        push, why = wls.plan_push(conn, "gate-1")
        assert why == "snapshot" and push is not None
        assert _chunks_payload(push.messages) == (SNAPSHOT, 1, 0, v1.data)
        _status(conn, "gate-1", {"v": 1, "online": True, "wl": 1})
        assert wls.plan_push(conn, "gate-1") == (None, "in_sync")
        registry.revoke_card(conn, "1111111111111111")
        v2 = wls.compile_school(conn, "s1", keep=5)
        assert v2 is not None
        push, why = wls.plan_push(conn, "gate-1")
        assert why == "delta" and push is not None
        assert _chunks_payload(push.messages) == (DELTA, 2, 1, build_delta(v1.data, v2.data))
        # the board rejected an update: snapshot next
        _status(conn, "gate-1", {"v": 1, "online": True, "wl": 1, "wl_err": "merge"})
        assert wls.plan_push(conn, "gate-1")[1] == "snapshot"
        # a version the cloud no longer (or never) had: snapshot
        _status(conn, "gate-1", {"v": 1, "online": True, "wl": 77})
        assert wls.plan_push(conn, "gate-1")[1] == "snapshot"
        # asked for a snapshot even though in sync
        _status(conn, "gate-1", {"v": 1, "online": True, "wl": 2})
        assert wls.plan_push(conn, "gate-1") == (None, "in_sync")
        assert wls.plan_push(conn, "gate-1", force_snapshot=True)[1] == "snapshot"


def test_status_parsing_and_storage(database_url: str) -> None:
    build(database_url)
    for bad in (b"", b"x", b"[]", b'{"v":2,"online":true}', b'{"v":1}', b'{"v":1,"online":1}',
                b'{"v":1,"online":true,"wl":"3"}', b'{"v":1,"online":true,"wl":-1}',
                b'{"v":1,"online":true,"wl":true}', b"\xff\xfe",
                b'{"v":1,"online":true,"pad":"' + b"x" * 5000 + b'"}'):  # fmt: skip
        assert wls.parse_status(bad) is None, bad
    with _conn(database_url) as conn:
        doc = wls.parse_status(b'{"v":1,"online":true,"wl":3,"heap":4000}')
        assert doc is not None
        assert wls.record_status(conn, "gate-1", doc, retained=False)
        assert not wls.record_status(conn, "ghost", doc, retained=False)  # unregistered
        will = wls.parse_status(b'{"v":1,"online":false}')
        assert will is not None
        assert wls.record_status(conn, "gate-1", will, retained=False)
        row = conn.execute(
            "SELECT wl_version, online, last_seen IS NOT NULL FROM device_status"
            " WHERE device_id = 'gate-1'"
        ).fetchone()
        assert row == (3, False, True)  # the will keeps the version it last ran
        # a retained status seen first sets no last_seen
        assert wls.record_status(conn, "gate-2", doc, retained=True)
        assert conn.execute(
            "SELECT last_seen FROM device_status WHERE device_id = 'gate-2'"
        ).fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM device_status").fetchone() == (2,)


# -- API ------------------------------------------------------------------------------------


@pytest.fixture
def api(database_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w


def test_whitelist_and_drift_api(api: tuple[TestClient, World], database_url: str) -> None:
    c, w = api
    tech = w.auth("technician")
    r = c.get("/api/v1/whitelists/s1", headers=tech)
    assert r.status_code == 404, r.text
    with _conn(database_url) as conn:
        for s in ("s1", "s2", "s3"):
            wls.compile_school(conn, s, keep=5)
        registry.revoke_card(conn, "1111111111111111")
        wls.compile_school(conn, "s1", keep=5)
        _status(conn, "gate-1", {"v": 1, "online": True, "wl": 1})
        _status(conn, "gate-2", {"v": 1, "online": True, "wl": 1})
    r = c.get("/api/v1/whitelists/s1", headers=tech)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["version"], body["count"], body["versions_kept"]) == (2, 1, [2, 1])
    assert body["size"] == 32 + 12
    assert c.get("/api/v1/whitelists/s3", headers=tech).status_code == 404  # out of scope
    assert c.get("/api/v1/whitelists/s3", headers=w.auth("platform_admin")).status_code == 200
    assert c.get("/api/v1/whitelists/s1", headers=w.auth("guardian")).status_code == 403

    r = c.get("/api/v1/devices/drift", headers=tech)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["device_id"] for i in items] == ["gate-1"]  # the technician's school only
    assert items[0]["running"] == 1 and items[0]["latest"] == 2
    assert items[0]["in_sync"] is False and items[0]["online"] is True
    r = c.get("/api/v1/devices/drift", headers=w.auth("district_authority"))
    got = {i["device_id"]: i for i in r.json()["items"]}
    assert sorted(got) == ["gate-1", "gate-2"]
    assert got["gate-2"]["in_sync"] is True
    r = c.get("/api/v1/devices/drift?only_drifting=true", headers=w.auth("platform_admin"))
    assert [i["device_id"] for i in r.json()["items"]] == ["gate-1", "gate-3"]
    assert r.json()["items"][1]["running"] is None
    assert c.get("/api/v1/devices/drift?limit=0", headers=tech).status_code == 422
    assert c.get("/api/v1/devices/drift", headers=w.auth("canteen_operator")).status_code == 403


# -- the worker against the real broker -----------------------------------------------------


class FakeBoard:
    """A paho client on the board's topics: receives wl chunks, publishes status and wl/req."""

    def __init__(self, host: str, port: int, prefix: str, device: str) -> None:
        self.base = f"{prefix}/v1/dev/{device}/"
        self.q: queue.Queue[bytes] = queue.Queue()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id=f"fb-{prefix}-{device}", protocol=mqtt.MQTTv311)  # fmt: skip
        self.c.on_message = lambda _c, _u, m: self.q.put(bytes(m.payload))
        self.c.connect(host, port)
        self.c.loop_start()
        self.c.subscribe(self.base + "wl", qos=1)
        time.sleep(0.3)

    def status(self, wl: int, **extra: Any) -> None:
        doc = {"v": 1, "online": True, "wl": wl, **extra}
        self.c.publish(self.base + "status", json.dumps(doc), qos=1, retain=True).wait_for_publish(
            5
        )

    def receive(self, timeout: float = 5.0) -> tuple[int, int, int, bytes]:
        first = self.q.get(timeout=timeout)
        count = struct.unpack_from("<H", first, 8)[0]
        msgs = [first] + [self.q.get(timeout=timeout) for _ in range(count - 1)]
        return _chunks_payload(msgs)

    def quiet(self, seconds: float) -> bool:
        try:
            self.q.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.c.publish(self.base + "status", b"", qos=1, retain=True).wait_for_publish(5)
        self.c.disconnect()
        self.c.loop_stop()


def test_worker_pushes_changes_and_answers_requests(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int]
) -> None:
    build(database_url)
    s = Settings(database_url=database_url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
                 topic_prefix=topic_prefix, whitelist_poll_ms=100)  # fmt: skip
    board = FakeBoard(mqtt_addr[0], mqtt_addr[1], topic_prefix, "gate-1")
    worker = WhitelistPush(s)
    worker.start()
    try:
        assert worker.wait_ready(10)
        # the worker compiles v1 at start; a board that runs nothing gets the snapshot
        board.status(0)
        kind, version, base, data = board.receive()
        with _conn(database_url) as conn:
            v1 = wls.latest(conn, "s1")
        assert v1 is not None and (kind, version, base, data) == (SNAPSHOT, 1, 0, v1.data)
        board.status(1)
        assert board.quiet(1.0)  # in sync: nothing more
        with _conn(database_url) as conn:
            assert conn.execute(
                "SELECT wl_version, online FROM device_status WHERE device_id = 'gate-1'"
            ).fetchone() == (1, True)
        # a card revoked: within a second or two a delta 1 -> 2 arrives
        t0 = time.monotonic()
        with _conn(database_url) as conn:
            registry.revoke_card(conn, "1111111111111111")
        kind, version, base, data = board.receive()
        assert time.monotonic() - t0 < 3
        with _conn(database_url) as conn:
            v2 = wls.latest(conn, "s1")
        assert v2 is not None and v2.version == 2
        assert (kind, version, base, data) == (DELTA, 2, 1, build_delta(v1.data, v2.data))
        board.status(2)
        assert board.quiet(0.7)
        # wl/req: a snapshot even though in sync
        board.c.publish(board.base + "wl/req", b'{"v":1,"have":2,"want":"snapshot"}', qos=1)
        assert board.receive()[:3] == (SNAPSHOT, 2, 0)
        # garbage status is ignored, the worker keeps going
        board.c.publish(board.base + "status", b"\x00garbage", qos=1).wait_for_publish(5)
        board.c.publish(board.base + "wl/req", b'{"v":1,"have":2,"want":"snapshot"}', qos=1)
        assert board.receive()[:3] == (SNAPSHOT, 2, 0)
        assert worker.stats["bad_status"] >= 1
        # the same update is not re-sent on every status within RESEND_S (no storm when a board
        # keeps rejecting it); the heartbeat after that gets it again
        board.status(1, wl_err="crc")
        assert board.quiet(0.7)
    finally:
        worker.stop()
        board.close()
