"""Catch-up after an outage: one simulated board (simulator.board.VirtualBoard, firmware from a
ROMFS image in the MicroPython VM) journals 20,000 taps while its broker port is closed, then
comes back (power cycle onto a private Mosquitto) with the ingest running in-process
(cloud.ingest.service.Ingest) on a throwaway database: time from reconnect until the journal is
empty (every event committed and acked), and events/s.

``python -m bench catchup``. Baseline in the same run: the same board with device.json
``"batch": 1`` (one event per message, one ack per event) for 500 events; its total is scaled
to 20,000 at its measured rate. The board keeps up to 8 batches in flight (docs/decisions.md
D25-L); before that it drained one batch per ack, 82 s for the 20,000 here.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

from bench.common import Row, count_events, database, device_ids, median, mosquitto, report
from cloud.domain.whitelist import build_whitelist
from cloud.ingest.service import Ingest
from cloud.settings import Settings
from simulator.board import BoardConfig, VirtualBoard

EVENTS = 20_000
BASELINE_EVENTS = 500
SITE_KEY = b"k" * 32


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()  # nothing listens there afterwards: every connect is refused
    return port


def _catchup(url: str, port: int, device: str, events: int, batch: int) -> float:
    """Seconds from the board's reconnect until its journal of ``events`` is drained."""
    prefix = f"bench{device.replace('-', '')}{int(time.time() * 1000) % 100000}"
    cfg = BoardConfig(device=device, school="b1", site_key=SITE_KEY, prefix=prefix,
                      mqtt_port=_closed_port(), ack_timeout_ms=5000, batch=batch)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="qadam-bench-catchup-") as d:
        board = VirtualBoard(cfg, Path(d) / "flash")
        board.write_flash(build_whitelist(1, []))
        board.start()
        try:
            for i in range(events):  # distinct cards, so none is debounced
                board._send(f"tap {(0x04000000 + i % 5000).to_bytes(4, 'big').hex()}")
                if i % 200 == 199:
                    board.wait_for(lambda i=i: len(board.taps) > i - 400, 60, "to keep up")
            board.wait_for(lambda: len(board.taps) == events, 120, "to journal every tap")
            assert board.stat()["journal"] == events
            board.stop()
            cfg.mqtt_port = port
            (board.flash / "device.json").write_text(json.dumps(cfg.device_json()))
            ingest = Ingest(Settings(database_url=url, mqtt_host="127.0.0.1", mqtt_port=port,
                                     topic_prefix=prefix,
                                     ingest_client_id=f"ingest-{prefix}"))  # fmt: skip
            ingest.start()
            try:
                t0 = time.monotonic()
                board.start()
                board.wait_drained(600)
                took = time.monotonic() - t0
            finally:
                ingest.stop()
            assert board.stat()["journal"] == 0
        finally:
            board.stop()
    return took


def run(repeat: int = 3) -> list[Row]:
    # One 20,000-event board takes ~1 min to journal; a single run keeps the total < 5 min.
    repeat = 1 if repeat > 1 else repeat
    fast: list[float] = []
    slow: list[float] = []
    with mosquitto() as port, database(2 * repeat) as url:
        devices = device_ids(2 * repeat)
        for r in range(repeat):
            fast.append(_catchup(url, port, devices[2 * r], EVENTS, 32))
            slow.append(_catchup(url, port, devices[2 * r + 1], BASELINE_EVENTS, 1))
        stored = count_events(url)
    assert stored == repeat * (EVENTS + BASELINE_EVENTS), stored
    t = median(fast)
    rate_1 = BASELINE_EVENTS / median(slow)
    return [
        Row("catch-up of 20,000 journaled events (batch 32)", t, "s",
            baseline=EVENTS / rate_1, ratio=(EVENTS / rate_1) / t,
            goal="<= 20 s (issue #14)"),
        Row("drain rate (batch 32)", EVENTS / t, "events/s", baseline=rate_1,
            ratio=(EVENTS / t) / rate_1),
        Row("drain rate (batch 1, 500 events)", rate_1, "events/s"),
    ]  # fmt: skip


if __name__ == "__main__":
    report("catchup", run())
