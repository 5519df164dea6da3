"""The command pusher (cloud/workers/command_push.py, D27-A) against the real broker and database,
with a paho client playing the boards: a command waits while its board is offline and goes out
on its online status (QoS 1, not retained, on that board's topic only); a reply is stored only
from the board's own topic and only once; after a reconnect the repeatable commands go out again
but "open" never does; an overdue command expires; a canteen board's status brings it its menu
once."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud.commands import queue as cq
from cloud.commands.menu import school_today
from cloud.domain import registry
from cloud.settings import Settings
from cloud.workers.command_push import CommandPush


class Boards:
    """Publishes statuses and replies as boards; receives what the cloud sends on .../cmd."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.got: queue.Queue[tuple[str, dict[str, Any], int, bool]] = queue.Queue()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             protocol=mqtt.MQTTv311)  # fmt: skip
        self.c.on_message = lambda _c, _u, m: self.got.put(
            (m.topic.split("/")[3], json.loads(m.payload), m.qos, bool(m.retain))
        )
        self.c.connect(host, port, keepalive=30)
        self.c.loop_start()
        self.c.subscribe(f"{prefix}/v1/dev/+/cmd", qos=1)
        time.sleep(0.3)

    def pub(self, device: str, leaf: str, doc: dict[str, Any], retain: bool = False) -> None:
        info = self.c.publish(f"{self.prefix}/v1/dev/{device}/{leaf}", json.dumps(doc), 1, retain)
        info.wait_for_publish(10)

    def status(self, device: str, online: bool) -> None:
        doc: dict[str, Any] = {"v": 1, "online": online}
        if online:
            doc.update(boot=1, up=5, wl=1)
        self.pub(device, "status", doc, retain=True)

    def next(self, timeout: float = 5.0) -> tuple[str, dict[str, Any], int, bool]:
        return self.got.get(timeout=timeout)

    def none(self, wait: float) -> bool:
        try:
            self.got.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def close(self, devices: list[str]) -> None:
        for d in devices:  # no retained statuses left behind on the shared broker
            self.c.publish(f"{self.prefix}/v1/dev/{d}/status", b"", 1, True).wait_for_publish(5)
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def world(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int]
) -> Iterator[tuple[Boards, CommandPush, str]]:
    with psycopg.connect(database_url) as conn:
        registry.create_school(conn, "s1", "School 1", b"k" * 32)
        registry.register_device(conn, "gate-1", "s1", "entrance", "turnstile", "mfrc522")
        registry.register_device(conn, "gate-2", "s1", "exit", "turnstile", "mfrc522")
        registry.register_device(conn, "ct-1", "s1", "canteen", "canteen", "canteen")
    settings = Settings(
        database_url=database_url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
        topic_prefix=topic_prefix, command_poll_ms=50, command_resend_s=60,
    )  # fmt: skip
    boards = Boards(mqtt_addr[0], mqtt_addr[1], topic_prefix)
    worker = CommandPush(settings)
    worker.start()
    assert worker.wait_ready(10)
    try:
        yield boards, worker, database_url
    finally:
        worker.stop()
        boards.close(["gate-1", "gate-2", "ct-1"])


def _queue(url: str, device: str, cmd: str, args: dict[str, Any] | None = None) -> int:
    with psycopg.connect(url) as conn:
        return int(cq.enqueue(conn, device, "s1", cmd, args or {}, actor_id=None)["id"])


def _row(url: str, cid: int) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT state, attempts, reply, error FROM device_commands WHERE id = %s", (cid,)
        ).fetchone()
    assert row is not None
    return tuple(row)


def _until(pred: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_waits_for_the_board_and_stores_its_own_reply(world: Any) -> None:
    boards, _, url = world
    boards.status("gate-1", False)
    cid = _queue(url, "gate-1", "config", {"set": {"heartbeat_s": 30}})
    assert boards.none(0.6) and _row(url, cid)[:2] == ("queued", 0)  # offline: not sent
    boards.status("gate-1", True)
    device, doc, qos, retained = boards.next()
    assert (device, qos, retained) == ("gate-1", 1, False)
    assert doc == {"v": 1, "id": cid, "cmd": "config", "set": {"heartbeat_s": 30}}
    _until(lambda: _row(url, cid)[0] == "sent", "sent")
    # another board answering this id changes nothing; the board's own answer does, once
    boards.pub("gate-2", "cmd/res", {"v": 1, "id": cid, "ok": False, "error": "forged"})
    time.sleep(0.4)
    assert _row(url, cid)[0] == "sent"
    boards.pub("gate-1", "cmd/res", {"v": 1, "id": cid, "ok": True})
    _until(lambda: _row(url, cid)[0] == "ok", "the reply")
    boards.pub("gate-1", "cmd/res", {"v": 1, "id": cid, "ok": False, "error": "late"})
    time.sleep(0.4)
    assert _row(url, cid) == ("ok", 1, {"v": 1, "id": cid, "ok": True}, None)
    # a failed command keeps the board's reason
    cid2 = _queue(url, "gate-1", "config", {"set": {"relay_ms": 100}})
    assert boards.next()[1]["id"] == cid2
    boards.pub("gate-1", "cmd/res", {"v": 1, "id": cid2, "ok": False, "error": "bad_value:x"})
    _until(lambda: _row(url, cid2)[0] == "failed", "the failure")
    assert _row(url, cid2)[3] == "bad_value:x"


def test_after_a_reconnect_open_is_not_sent_again(world: Any) -> None:
    boards, _, url = world
    boards.status("gate-1", True)
    time.sleep(0.3)
    opened = _queue(url, "gate-1", "open")
    diag = _queue(url, "gate-1", "diag")
    assert sorted(boards.next()[1]["id"] for _ in range(2)) == [opened, diag]
    # unanswered; the board drops off and comes back
    boards.status("gate-1", False)
    time.sleep(0.3)
    boards.status("gate-1", True)
    device, doc, _, _ = boards.next()
    assert (device, doc["id"], doc["cmd"]) == ("gate-1", diag, "diag")
    assert boards.none(0.6), "open was published twice"
    assert _row(url, opened)[:2] == ("sent", 1) and _row(url, diag)[:2] == ("sent", 2)
    # overdue: expired, never sent again
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE device_commands SET expires_at = created_at + interval '1 ms'")
    _until(lambda: _row(url, opened)[0] == _row(url, diag)[0] == "expired", "expiry")


def test_a_canteen_status_brings_its_menu_once(world: Any) -> None:
    boards, worker, url = world
    with psycopg.connect(url) as conn:
        dish = conn.execute(
            "INSERT INTO dishes (school_id, name_kk, name_ru, price, allergen_mask)"
            " VALUES ('s1', 'Палау', 'Плов', 650, 4) RETURNING id"
        ).fetchone()
        assert dish is not None
        today = school_today(conn, "s1")
        conn.execute(
            "INSERT INTO menus (school_id, day, period, dish_ids) VALUES ('s1', %s, 'lunch', %s)",
            (today, [dish[0]]),
        )
    boards.status("ct-1", True)
    device, doc, _, _ = boards.next()
    assert (device, doc["cmd"]) == ("ct-1", "config")
    assert doc["set"]["menu"] == {"days": {str(today): {"lunch": [dish[0], 4, "650", "Плов"]}}}
    boards.pub("ct-1", "cmd/res", {"v": 1, "id": doc["id"], "ok": True})
    _until(lambda: _row(url, doc["id"])[0] == "ok", "the reply")
    boards.status("ct-1", True)  # the next heartbeat: the menu it holds is the current one
    assert boards.none(0.6)
    assert worker.stats["menus"] == 1
    # the door boards got no menu
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM device_commands").fetchone()
    assert row is not None and row[0] == 1
