"""Authenticated acks and the boot floor, cloud side (protocol.md "Ack", "Boot floor"; issue #13
items 6 and 7): the provisioning answer carries a per-device ack key and the newest boot the cloud
holds; the ingest signs every ack of a board with a key; the status consumer tells a board whose
boot is already used to move past it. Real PostgreSQL, real Mosquitto, paho playing the board."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from api_world import build, login_all
from cloud_helpers import Board, Seed, batch_doc, dumps, topic
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from cloud.api.app import create_app
from cloud.ingest import ackkeys
from cloud.ingest.decode import Batch, decode
from cloud.ingest.service import Ingest
from cloud.ingest.writer import write
from cloud.settings import Settings
from cloud.workers.whitelist_push import WhitelistPush
from tools.flashing.provision import _parse, device_document

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
KEY = bytes(range(32))


def _store(url: str, dev: str, boot: int, seqs: range, up0: int = 0) -> None:
    """Events of (dev, boot) as the ingest stores them (uptime ``up0 + 1000 * seq`` ms)."""
    doc = batch_doc(dev=dev, boot=boot, seqs=seqs)
    for e in doc["events"]:
        e["up"] += up0
    b = decode(topic("qadam", dev), dumps(doc))
    assert isinstance(b, Batch), b
    with psycopg.connect(url, autocommit=True) as conn:
        write(conn, [b])


def test_the_clouds_mac_is_the_boards() -> None:
    # The same HMAC-SHA256, truncated to 16 bytes, over the same canonical bytes, on both ends:
    # Python's hmac here, the ipad/opad construction of the firmware (run under CPython).
    if str(FIRMWARE) not in sys.path:
        sys.path.append(str(FIRMWARE))
    from net.sync import sign

    cases = [
        (KEY, "gate-1", 7, 1, 32),
        (b"\xff" * 32, "a", 1, 5, 5),
        (bytes(32), "x-" * 15 + "yz", 2**31, 10**9, 10**9 + 31),
    ]
    for key, dev, boot, first, last in cases:
        msg = b"%s|%d|%d|%d" % (dev.encode(), boot, first, last)
        want = hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]
        assert ackkeys.ack_mac(key, dev, boot, first, last) == want == sign(key, msg)
        fmsg = b"%s|%d" % (dev.encode(), boot)
        assert ackkeys.floor_mac(key, dev, boot) == sign(key, fmsg)
    payload = b'{"v":1,"boot":7,"first":1,"last":3}'
    assert ackkeys.signed_payload(payload, None, "gate-1", 7, 1, 3) == payload
    signed = json.loads(ackkeys.signed_payload(payload, KEY, "gate-1", 7, 1, 3))
    assert signed == {"v": 1, "boot": 7, "first": 1, "last": 3,
                      "mac": ackkeys.ack_mac(KEY, "gate-1", 7, 1, 3)}  # fmt: skip
    cmd = json.loads(ackkeys.floor_command(KEY, "gate-1", 40))
    assert cmd == {"v": 1, "id": "floor-40", "cmd": "floor", "boot": 40,
                   "mac": ackkeys.floor_mac(KEY, "gate-1", 40)}  # fmt: skip


def test_provisioning_gives_the_board_its_ack_key_and_boot_floor(database_url: str) -> None:
    w = build(database_url)
    _store(database_url, "gate-1", 9, range(1, 3))
    _store(database_url, "gate-1", 4, range(1, 3))
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        answers = []
        for boot in (None, 12):
            if boot:  # the board ran boot 12 since: a re-flash must start above it
                _store(database_url, "gate-1", boot, range(1, 2))
            r = c.post("/api/v1/devices/gate-1/claim-token", headers=w.auth("technician"))
            assert r.status_code == 201, r.text
            r = c.post("/api/v1/provision", json={"device": "gate-1", "token": r.json()["token"]})
            assert r.status_code == 200, r.text
            answers.append(r.json())
    first, again = answers
    assert first["boot_floor"] == 9 and again["boot_floor"] == 12
    keys = [a["ack_key"] for a in answers]
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in keys) and keys[0] != keys[1]
    with psycopg.connect(database_url) as conn:
        stored = dict(conn.execute("SELECT device_id, ack_key FROM device_credentials").fetchall())
        audit = conn.execute("SELECT string_agg(after::text, ' ') FROM audit_log").fetchone()
    assert bytes(stored["gate-1"]).hex() == again["ack_key"]  # a new flash: a new key
    assert audit is not None and not any(k in (audit[0] or "") for k in keys)  # never logged
    # The flash tool writes both into device.json.
    p = _parse("gate-1", json.dumps(again).encode())
    doc = device_document({"relay_ms": 300, "ack_key": "00" * 32}, p)
    assert doc["ack_key"] == again["ack_key"] and doc["boot_floor"] == 12


def test_the_ingest_signs_the_acks_of_a_board_with_a_key(settings: Settings, seed: Seed) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO device_credentials (device_id, mqtt_username, broker_acl, ack_key)"
            " VALUES ('gate-1', 'board.gate-1', false, %s)", (KEY,),
        )  # fmt: skip
    board = Board(settings.mqtt_host, settings.mqtt_port, settings.topic_prefix)
    ing = Ingest(settings)
    ing.start()
    try:
        assert ing.wait_ready(10)
        p = settings.topic_prefix
        board.publish(topic(p), dumps(batch_doc(seqs=range(1, 4))))
        _, ack = board.next_ack()
        assert ack == {"v": 1, "boot": 7, "first": 1, "last": 3,
                       "mac": ackkeys.ack_mac(KEY, "gate-1", 7, 1, 3)}  # fmt: skip
        # A board without a key (gate-2: not provisioned) gets the ack without a mac.
        board.publish(topic(p, "gate-2"), dumps(batch_doc(dev="gate-2", seqs=[5])))
        _, ack = board.next_ack()
        assert ack == {"v": 1, "boot": 7, "first": 5, "last": 5}
    finally:
        ing.stop()
        board.close()


class _Cmds:
    """Plays a board: publishes statuses, collects what arrives on its cmd topic."""

    def __init__(self, s: Settings, dev: str) -> None:
        self.base = f"{s.topic_prefix}/v1/dev/{dev}/"
        self.got: queue.Queue[bytes] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.c.on_message = lambda _c, _u, m: self.got.put(bytes(m.payload))
        self.c.connect(s.mqtt_host, s.mqtt_port)
        self.c.loop_start()
        self.c.subscribe(self.base + "cmd", 1)
        time.sleep(0.3)

    def status(self, boot: int, up: int) -> None:
        doc = {"v": 1, "online": True, "fw": "0.1.0", "boot": boot, "up": up, "journal": 0}
        self.c.publish(self.base + "status", json.dumps(doc), qos=1, retain=True).wait_for_publish()

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return dict(json.loads(self.got.get(timeout=timeout)))

    def quiet(self, wait: float) -> bool:
        try:
            self.got.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.c.publish(self.base + "status", b"", qos=1, retain=True).wait_for_publish()
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def worker(settings: Settings, seed: Seed) -> Iterator[WhitelistPush]:
    w = WhitelistPush(settings)
    w.start()
    assert w.wait_ready(10)
    yield w
    w.stop()


def test_a_board_reporting_a_used_boot_is_told_to_move_past_it(
    settings: Settings, worker: WhitelistPush
) -> None:
    url = settings.database_url
    _store(url, "gate-1", 5, range(1, 4), up0=3_600_000)  # boot 5 ran for an hour
    _store(url, "gate-2", 3, range(1, 2))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO device_credentials (device_id, mqtt_username, broker_acl, ack_key)"
            " VALUES ('gate-1', 'board.gate-1', false, %s)", (KEY,),
        )  # fmt: skip
    g1, g2 = _Cmds(settings, "gate-1"), _Cmds(settings, "gate-2")
    try:
        g1.status(boot=2, up=5)  # erase-flash restarted the counter below what the cloud holds
        assert g1.next() == {"v": 1, "id": "floor-5", "cmd": "floor", "boot": 5,
                             "mac": ackkeys.floor_mac(KEY, "gate-1", 5)}  # fmt: skip
        g1.status(boot=6, up=6)  # the board moved past it: nothing more
        assert g1.quiet(1.0)
        g1.status(boot=5, up=10)  # the same number, but boot 5's events ran an hour longer
        assert g1.next()["boot"] == 5
        # gate-2 (no key): boot 3 is its current boot, its events are its own (up 1 s < 20 s)
        g2.status(boot=3, up=20)
        assert g2.quiet(1.0)
        g2.status(boot=1, up=2)
        assert g2.next() == {"v": 1, "id": "floor-3", "cmd": "floor", "boot": 3}
        assert worker.stats["boot_floors"] == 3
    finally:
        g1.close()
        g2.close()
