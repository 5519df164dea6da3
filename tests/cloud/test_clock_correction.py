"""Clock correction (protocol.md "Clock", migration 0008): a status with a synced clock reference
pair corrects the unsynced events of that boot, in occurred_at_corrected, never in occurred_at."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from auth_tokens import make_admin_token
from cloud_helpers import T0, Seed, batch_doc, dumps, topic
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from cloud.api.app import create_app
from cloud.ingest.clock import apply_status_clock, clock_ref
from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import write
from cloud.settings import Settings
from cloud.workers.whitelist_push import WhitelistPush

BOGUS_T = 1_000  # an unsynced board clock: 1970
T_REF, UP_REF = T0 + 3600, 7_200_000  # synced at up = 2 h


def _store(conn: Any, boot: int, seqs: list[int], sync: int, dev: str = "gate-1") -> None:
    # event seq s: up = 1,000,003 * s ms (not whole seconds), board time bogus when unsynced
    docs = [batch_doc(dev=dev, boot=boot, seqs=[s], sync=sync, up=1_000_003 * s,
                      t=(BOGUS_T + s) if not sync else T0 + s) for s in seqs]  # fmt: skip
    batches = []
    for d in docs:
        b = decode(topic("qadam", dev), dumps(d))
        assert isinstance(b, Batch), b
        batches.append(b)
    write(conn, batches)


def _status(boot: int, t: int = T_REF, up: int = UP_REF, synced: int = 1) -> dict[str, Any]:
    clock: dict[str, Any] = {"synced": synced, "t": t, "up": up} if synced else {"synced": 0}
    return {"v": 1, "online": True, "boot": boot, "wl": 0, "up": 7300, "clock": clock}


def _expected(up: int, t_ref: int = T_REF, up_ref: int = UP_REF) -> float:
    return t_ref - (up_ref - up) / 1000


def _rows(conn: Any, dev: str = "gate-1") -> dict[tuple[int, int], tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT boot, seq, uptime_ms, clock_synced, occurred_at, occurred_at_corrected"
        " FROM events WHERE device_id = %s",
        (dev,),
    ).fetchall()
    return {(int(r[0]), int(r[1])): r[2:] for r in rows}


def _check_corrected(up: int, occurred: datetime, corrected: datetime | None,
                     t_ref: int = T_REF, up_ref: int = UP_REF) -> None:  # fmt: skip
    assert corrected is not None
    assert abs(corrected.timestamp() - _expected(up, t_ref, up_ref)) < 1.0
    assert occurred.timestamp() < 10_000  # occurred_at keeps the board's (bogus) time


@pytest.fixture
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def test_clock_ref_parsing() -> None:
    assert clock_ref(_status(7)) == (7, T_REF, UP_REF)
    assert clock_ref(_status(7, synced=0)) is None
    assert clock_ref({"v": 1, "online": True, "boot": 7}) is None
    assert clock_ref({"v": 1, "online": True, "clock": {"synced": 1, "t": 5, "up": 1}}) is None
    assert clock_ref({**_status(7), "boot": True}) is None
    assert clock_ref({**_status(7), "clock": {"synced": 1, "t": "x", "up": 1}}) is None
    assert clock_ref({**_status(7), "clock": {"synced": 1, "t": 5, "up": -1}}) is None


def test_status_corrects_unsynced_events_of_its_boot(conn: Any, seed: Seed) -> None:
    _store(conn, 7, [1, 2, 3], sync=0)
    _store(conn, 7, [4], sync=1)  # synced: never corrected
    _store(conn, 6, [1, 2], sync=0)  # an earlier boot: another up timeline
    _store(conn, 7, [1], sync=0, dev="gate-2")  # another device
    assert all(r[3] is None for r in _rows(conn).values())

    assert apply_status_clock(conn, "gate-1", _status(7)) == 3
    rows = _rows(conn)
    for s in (1, 2, 3):
        up, synced, occurred, corrected = rows[(7, s)]
        assert not synced and up == 1_000_003 * s
        _check_corrected(up, occurred, corrected)
    assert rows[(7, 4)][3] is None
    assert rows[(6, 1)][3] is None and rows[(6, 2)][3] is None
    assert _rows(conn, "gate-2")[(7, 1)][3] is None

    # a heartbeat with the same pair changes nothing; events stored later are corrected on insert
    assert apply_status_clock(conn, "gate-1", _status(7)) == 0
    _store(conn, 7, [5, 6], sync=0)
    rows = _rows(conn)
    for s in (5, 6):
        up, _, occurred, corrected = rows[(7, s)]
        _check_corrected(up, occurred, corrected)
    # a retransmission of a corrected event stays one row
    _store(conn, 7, [1], sync=0)
    assert conn.execute("SELECT count(*) FROM events WHERE device_id = 'gate-1'").fetchone()[0] == 8

    # no reference pair, unknown device: nothing happens
    assert apply_status_clock(conn, "gate-1", _status(6, synced=0)) == 0
    assert apply_status_clock(conn, "nope", _status(7)) == 0
    assert conn.execute("SELECT count(*) FROM device_clock_refs").fetchone()[0] == 1

    # API: occurred_at_corrected is the best known time (corrected, else occurred_at)
    headers = {"Authorization": f"Bearer {make_admin_token(conn.info.dsn)}"}
    with TestClient(create_app(Settings(database_url=conn.info.dsn)), headers=headers) as client:
        r = client.get("/api/v1/events", params={"device": "gate-1", "limit": 100})
        assert r.status_code == 200, r.text
        items = {(i["boot"], i["seq"]): i for i in r.json()["items"]}
    got = datetime.fromisoformat(items[(7, 2)]["occurred_at_corrected"])
    assert abs(got.timestamp() - _expected(2_000_006)) < 1.0
    for k in ((7, 4), (6, 1)):
        assert items[k]["occurred_at_corrected"] == items[k]["occurred_at"]


def test_status_consumer_applies_the_clock(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int], seed: Seed
) -> None:
    with psycopg.connect(database_url, autocommit=True) as c:
        _store(c, 9, [1, 2], sync=0)
    s = Settings(database_url=database_url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
                 topic_prefix=topic_prefix, whitelist_poll_ms=100)  # fmt: skip
    worker = WhitelistPush(s)
    worker.start()
    board = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    board.connect(mqtt_addr[0], mqtt_addr[1], keepalive=30)
    board.loop_start()
    try:
        assert worker.wait_ready(10)
        t_ref = int(datetime(2025, 10, 9, 8, 0, tzinfo=UTC).timestamp())
        doc = _status(9, t=t_ref, up=5_000_000)
        board.publish(topic(topic_prefix, "gate-1", "status"), json.dumps(doc).encode(),
                      qos=1).wait_for_publish(5)  # fmt: skip
        deadline = time.monotonic() + 10
        with psycopg.connect(database_url, autocommit=True) as c:
            while time.monotonic() < deadline:
                rows = _rows(c)
                # the counter moves just after the commit: wait for both
                done = all(r[3] is not None for r in rows.values())
                if done and worker.stats["clock_corrected"] >= 2:
                    break
                time.sleep(0.05)
        for up, _, occurred, corrected in rows.values():
            _check_corrected(up, occurred, corrected, t_ref, 5_000_000)
        assert worker.stats["clock_corrected"] == 2
    finally:
        board.loop_stop()
        board.disconnect()
        worker.stop()
