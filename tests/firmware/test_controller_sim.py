"""Door/turnstile controller and supervisor in the real MicroPython VM (sim HAL, the .mpy bundle
in a board-sized heap, simulator.board.VirtualBoard) against the real Mosquitto: a grant nobody
walks through becomes a "not_passed" event in the cloud; a wedged reader task stops the
watchdog and the board dies with @wdt; three failed boots put the board into safe mode; a
failing reader is re-initialised without a reboot."""

from __future__ import annotations

import json
import queue
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from simulator.board import BoardConfig, VirtualBoard

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE / "cases"))
from fwhelpers import whitelist_bytes  # noqa: E402
from store.cardkey import card_key  # noqa: E402  (firmware/ is on sys.path via conftest)

SITE_KEY = bytes(range(16))
UID = bytes.fromhex("04a1b2c3")
TURNSTILE = {
    "hal": "sim",
    "relays": [{"reader": "in", "pulse_ms": 300}, {"reader": "out", "pulse_ms": 300}],
    "passage_sensors": [{"reader": "in"}, {"reader": "out"}],
}


def make_board(tmp: Path, prefix: str, addr: tuple[str, int], extra: dict,
               board_json: dict | None = None, device: str = "ts-1") -> VirtualBoard:
    cfg = BoardConfig(device=device, school="s1", site_key=SITE_KEY, mqtt_host=addr[0],
                      mqtt_port=addr[1], prefix=prefix, extra=extra)
    b = VirtualBoard(cfg, tmp / device)
    b.write_flash(whitelist_bytes(1, [card_key(SITE_KEY, UID)]))
    if board_json is not None:
        (b.flash / "board.json").write_text(json.dumps(board_json))
    return b


def lines(b: VirtualBoard, tag: str, since: int = 0) -> list[dict]:
    out = b.output[since:]
    return [json.loads(x.split(" ", 1)[1]) for x in out if x.startswith(f"@{tag} ")]


def wait_line(b: VirtualBoard, tag: str, timeout: float = 10.0) -> dict:
    b.wait_for(lambda: bool(lines(b, tag)), timeout, f"to print @{tag}")
    return lines(b, tag)[-1]


@pytest.fixture
def cloud(topic_prefix: str, mqtt_addr: tuple[str, int]):
    msgs: queue.Queue[tuple[str, bytes]] = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cloud-" + topic_prefix)
    c.on_message = lambda _c, _u, m: msgs.put((m.topic, bytes(m.payload)))
    c.connect(*mqtt_addr)
    c.loop_start()
    c.subscribe(f"{topic_prefix}/v1/dev/+/#", 1)
    time.sleep(0.3)
    c.msgs = msgs
    yield c
    for dev in ("ts-1", "sm-1"):
        c.publish(f"{topic_prefix}/v1/dev/{dev}/status", b"", qos=1, retain=True)
    c.loop_stop()
    c.disconnect()


def cloud_events(c, until, timeout: float = 15.0) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            t, p = c.msgs.get(timeout=0.2)
        except queue.Empty:
            continue
        if t.endswith("/events"):
            got += json.loads(p)["events"]
            if until(got):
                return got
    raise AssertionError(f"cloud did not get the expected events: {got}")


def test_grant_without_passage_gives_not_passed_event(tmp_path, topic_prefix, mqtt_addr, cloud):
    b = make_board(tmp_path, topic_prefix, mqtt_addr,
                   {"passage_timeout_ms": 800}, TURNSTILE)
    b.start()
    try:
        b.wait_for(lambda: b.mqtt_up, 10, "to connect")
        tap = b.tap(UID, "in")
        assert tap and tap["result"] == "granted" and tap["reason"] == "ok"
        assert {"on": 1, "reader": "in"} in lines(b, "relay")
        np = wait_line(b, "not_passed", 5)
        assert np["ref"] == tap["seq"] and np["seq"] == tap["seq"] + 1 and np["reader"] == "in"
        evs = cloud_events(cloud, lambda g: any(e["kind"] == "not_passed" for e in g))
        ev = next(e for e in evs if e["kind"] == "not_passed")
        assert ev["ref"] == tap["seq"] and ev["reason"] == "passage_timeout"
        assert ev["card"] == tap["card"] and ev["result"] == "granted"
        # This time the person walks through: a passage, no second not_passed event.
        time.sleep(1.6)  # debounce
        tap2 = b.tap(UID, "in")
        b._send("pass in")
        assert wait_line(b, "passage", 5) == {"reader": "in", "ref": tap2["seq"]}
        time.sleep(1.2)
        assert len(lines(b, "not_passed")) == 1
        b.stat()
        assert b.last_stat["heap"] > 4000, b.last_stat
    finally:
        b.stop()


def test_wedged_reader_task_trips_the_watchdog(tmp_path, topic_prefix, mqtt_addr):
    b = make_board(tmp_path, topic_prefix, mqtt_addr,
                   {"supervisor": {"wdt_ms": 1500, "stale_ms": 1000}})
    b.start()
    try:
        time.sleep(3)  # fed while healthy: the board lives well beyond the timeout
        assert b.running and not lines(b, "wdt")
        b._send("wedge reader")
        b.wait_for(lambda: b.exited, 10, "to be reset by the watchdog")
        assert lines(b, "wdt") == [{"timeout_ms": 1500}]
        assert any("task reader stopped" in x for x in b.output)
    finally:
        b.power_cut()


def test_spinning_board_trips_the_watchdog(tmp_path, topic_prefix, mqtt_addr):
    b = make_board(tmp_path, topic_prefix, mqtt_addr, {"supervisor": {"wdt_ms": 1500}})
    b.start()
    try:
        b._send("hang")  # the event loop itself is stuck: only the watchdog thread runs
        b.wait_for(lambda: b.exited, 10, "to be reset by the watchdog")
        assert lines(b, "wdt")
    finally:
        b.power_cut()


def test_safe_mode_after_three_failed_boots(tmp_path, topic_prefix, mqtt_addr, cloud):
    b = make_board(tmp_path, topic_prefix, mqtt_addr,
                   {"supervisor": {"healthy_s": 2}}, device="sm-1")
    for _ in range(3):  # each dies before it ran healthy for 2 s
        b.start()
        assert not lines(b, "safe_mode")
        b.power_cut()
    b.start()
    try:
        assert wait_line(b, "safe_mode") == {"fails": 3}
        b.stat()
        assert wait_line(b, "sup")["safe_mode"] is True
        assert b.tap(UID) is None  # no reader task
        b.wait_for(lambda: b.mqtt_up, 10, "to connect")  # network still runs
        deadline = time.monotonic() + 10
        while True:
            t, p = cloud.msgs.get(timeout=max(0.1, deadline - time.monotonic()))
            st = json.loads(p) if t.endswith("sm-1/status") and p else {}
            if st.get("online") and st.get("boot") == b.ready["boot"]:
                assert json.loads(p)["safe_mode"] is True
                break
        wait_line(b, "healthy", 10)  # healthy for 2 s: the counter is cleared
    finally:
        b.stop()
    assert (b.flash / "bootfail.cnt").read_text().strip() == "0"
    n = len(b.output)
    b.start()
    try:
        assert not lines(b, "safe_mode", n)
        assert b.tap(UID)["result"] == "granted"  # the next boot runs normally
    finally:
        b.stop()


def test_failing_reader_is_reinitialised_not_rebooted(tmp_path, topic_prefix, mqtt_addr):
    b = make_board(tmp_path, topic_prefix, mqtt_addr, {})
    b.start()
    try:
        b._send("fail reader 2")
        b.wait_for(lambda: len(lines(b, "reinit")) >= 2, 10, "to re-init its reader")
        assert b.tap(UID) is None  # backing off (1 s after the second failure): not reading
        time.sleep(1.5)
        assert b.tap(UID)["result"] == "granted"
        b.stat()
        sup = wait_line(b, "sup")
        assert sup["reinits"] == 2 and sup["safe_mode"] is False
        assert b.ready and b.ready["boot"] == 1  # no reboot
    finally:
        b.stop()
