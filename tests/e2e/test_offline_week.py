"""A board offline for a simulated week: 20,000 taps journaled while no broker is reachable, then
the board comes back (a power cycle onto the real broker) with the ingest running: every event
arrives in PostgreSQL exactly once and the journal drains. Prints the catch-up time."""

from __future__ import annotations

import json
import socket
import time

import psycopg

from cloud.domain import registry
from cloud.domain.whitelist import build_whitelist
from cloud.ingest.service import Ingest
from cloud.settings import Settings
from simulator.board import BoardConfig, VirtualBoard

EVENTS = 20_000
SITE_KEY = bytes(range(32, 48))


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there afterwards: every connect is refused
    return port


def test_week_offline_then_catch_up(database_url, topic_prefix, mqtt_addr, tmp_path):
    device = "wk-" + topic_prefix[-8:]
    with psycopg.connect(database_url) as conn:
        registry.create_school(conn, "wk", "Offline week school", SITE_KEY)
        registry.register_device(conn, device, "wk", "Main entrance", "turnstile", "in")
    cfg = BoardConfig(device=device, school="wk", site_key=SITE_KEY, prefix=topic_prefix,
                      mqtt_host=mqtt_addr[0], mqtt_port=_closed_port(), ack_timeout_ms=5000)
    board = VirtualBoard(cfg, tmp_path / "flash")
    board.write_flash(build_whitelist(1, []))
    board.start()
    try:
        # A week of taps with the broker unreachable; distinct cards, so none is debounced.
        for i in range(EVENTS):
            board._send(f"tap {(0x04000000 + i % 5000).to_bytes(4, 'big').hex()}")
            if i % 200 == 199:
                board.wait_for(lambda i=i: len(board.taps) > i - 400, 60, "to keep up")
        board.wait_for(lambda: len(board.taps) == EVENTS, 120, "to journal every tap")
        assert board.stat()["journal"] == EVENTS
        assert not board.mqtt_up
        board.stop()

        # Back online: the real broker, the ingest running.
        cfg.mqtt_port = mqtt_addr[1]
        (board.flash / "device.json").write_text(json.dumps(cfg.device_json()))
        ingest = Ingest(Settings(database_url=database_url, mqtt_host=mqtt_addr[0],
                                 mqtt_port=mqtt_addr[1], topic_prefix=topic_prefix,
                                 ingest_client_id=f"ingest-{topic_prefix}"))
        ingest.start()
        try:
            t0 = time.monotonic()
            board.start()
            board.wait_drained(600)
            catch_up = time.monotonic() - t0
        finally:
            ingest.stop()
        print(f"\ncatch-up of {EVENTS} events: {catch_up:.1f}s ({EVENTS / catch_up:.0f} events/s)")
        assert board.stat()["journal"] == 0
    finally:
        board.stop()

    tapped = sorted((t["boot"], t["seq"]) for t in board.taps)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT boot, seq FROM events WHERE device_id = %s", (device,)
        ).fetchall()
    stored = sorted((int(b), int(s)) for b, s in rows)
    assert len(tapped) == len(set(tapped)) == EVENTS
    assert stored == tapped  # every event exactly once
