"""Power-on to the first acked tap (issue #14, must show): a door board as `qadam flash --cloud
... --wifi` leaves it (device.json and ca.pem written by the flasher's own code,
tools/flashing/provision.py) boots in the MicroPython VM (firmware from the ROMFS image), joins
its Wi-Fi (hal.simnet: association 200 ms + DHCP 300 ms, its defaults), connects to a private
Mosquitto over TLS with the CA verified (tests/tls_broker.py), asks a local NTP server the time;
a card is presented as soon as the board is up (@ready), and the clock stops when the cloud's
ack for that tap arrives: the real ingest (in-process, a throwaway database) commits it first.

``python -m bench power_on [--repeat N]`` (median of N runs, default 3). Baseline in the same
run: the same board with plain MQTT, no Wi-Fi bring-up and no NTP (the simulator's board: a
clock set from the host, the broker at once). Also reported: power-on to @ready (the firmware
booted: a tap is decided from then on, offline), to the network, to the broker.

What the VM does not model: a real ESP32's radio (association and DHCP take 1-3 s on a school's
access point), its slower P-256 handshake (D25-K: 80-90 ms here) and its boot from flash.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Row, count_events, database, device_ids, median, report
from cloud.domain.cardkey import card_key
from cloud.domain.whitelist import build_whitelist
from cloud.ingest.service import Ingest
from cloud.settings import Settings
from simulator.board import DEFAULT_HEAP, BoardConfig, VirtualBoard
from tests.ntp_server import NtpServer
from tests.tls_broker import make_pki, tls_mosquitto
from tools.flashing import provision

SITE_KEY = b"k" * 32
UID = bytes.fromhex("04a0b0c0")
SSID, WIFI_KEY = "school", "school-passphrase"
PREFIX = "benchpower"
# A door with TLS gets 80 KiB (TLS_HEAP, D25-K), one with the Wi-Fi bring-up 80 KiB too (D25-J);
# with both, the TLS connect runs out at 80 and 84 KiB (MemoryError, a 3,048-byte block) and
# succeeds at 88 KiB (18.8 KB free after the first ack): 96 KiB here (D27-C).
FIELD_HEAP = "96K"
STAGES = ("ready", "net", "mqtt", "ack")


class Stamps:
    """Monotonic time of the first line of each stage the board prints (VirtualBoard's echo)."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.at: dict[str, float] = {}
        self.heap = 0  # free heap after the first ack (stat)
        self.lock = threading.Lock()

    def __call__(self, _device: str, line: str) -> None:
        now = time.monotonic()
        name = line[1:].split(" ", 1)[0] if line.startswith("@") else ""
        if name == "mqtt" and '"up":true' not in line:
            return
        if name in STAGES:
            with self.lock:
                self.at.setdefault(name, now - self.t0)


def _files(device: str, pki: Path, tls_port: int, ntp_port: int) -> dict[str, bytes]:
    """What the flasher writes from a TLS cloud's answer, with `--wifi school=...`."""
    p = provision.Provisioned(
        device=device, school="b1", site_key=SITE_KEY.hex(), host="127.0.0.1", port=tls_port,
        prefix=PREFIX, user=f"board.{device}", password="unused-anonymous-broker", acl=False,
        tls=True, ca_pem=(pki / "ca.pem").read_text(), server_hostname="127.0.0.1",
        ntp=(f"127.0.0.1:{ntp_port}",), timezone="Asia/Almaty", tz_offset_min=300, mode="door",
    )  # fmt: skip
    return provision.device_files(None, p, [{"ssid": SSID, "key": WIFI_KEY}])


def _one(flash: Path, device: str, field: tuple[Path, int, int] | None, plain_port: int) -> Stamps:
    """Power the board on, tap at @ready, until the tap's ack. ``field``: (PKI, TLS port, NTP
    port) for the board in the field; None: the simulator's plain board."""
    cfg = BoardConfig(device=device, school="b1", site_key=SITE_KEY, prefix=PREFIX,
                      mqtt_port=plain_port)  # fmt: skip
    stamps = Stamps()
    board = VirtualBoard(cfg, flash, heap=FIELD_HEAP if field else DEFAULT_HEAP, echo=stamps)
    board.write_flash(build_whitelist(1, [(card_key(SITE_KEY, UID), "student", 0, 0, 0)]))
    if field is not None:
        pki, tls_port, ntp_port = field
        for name, data in _files(device, pki, tls_port, ntp_port).items():
            (flash / name).write_bytes(data)
        (flash / "board.json").write_text(
            json.dumps({"hal": "sim", "sim_net": {"aps": {SSID: [WIFI_KEY, -60]}}})
        )
    stamps.t0 = time.monotonic()  # power on: the VM process starts
    board.start()
    try:
        tap = board.tap(UID)
        assert tap is not None and tap["result"] == "granted", tap
        board.wait_for(lambda: any(a.get("last", 0) >= tap["seq"] for a in board.acks), 60,
                       "the first tap's ack")  # fmt: skip
        stamps.heap = board.stat()["heap"]
    finally:
        board.stop()
    missing = [s for s in STAGES if s not in stamps.at and (field or s != "net")]
    assert not missing, f"{device}: no {missing} line"
    return stamps


def run(repeat: int = 5) -> list[Row]:
    field: list[Stamps] = []
    plain: list[Stamps] = []
    ntp = NtpServer()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="qadam-bench-power-") as d,
            database(2 * repeat) as url,
        ):
            pki = make_pki(Path(d) / "pki")
            with tls_mosquitto(pki) as (tls_port, plain_port):
                ingest = Ingest(Settings(database_url=url, mqtt_host="127.0.0.1",
                                         mqtt_port=plain_port, topic_prefix=PREFIX,
                                         ingest_client_id="ingest-bench-power",
                                         ingest_flush_ms=20))  # fmt: skip
                ingest.start()
                try:
                    assert ingest.wait_ready(15)
                    devs = device_ids(2 * repeat)
                    for r in range(repeat):
                        field.append(_one(Path(d) / f"f{r}", devs[2 * r],
                                          (pki, tls_port, ntp.port), plain_port))  # fmt: skip
                        plain.append(_one(Path(d) / f"p{r}", devs[2 * r + 1], None, plain_port))
                finally:
                    ingest.stop()
            stored = count_events(url)
    finally:
        ntp.close()
    assert stored == 2 * repeat, stored

    def med(runs: list[Stamps], stage: str, since: str = "") -> float:
        return median([(s.at[stage] - (s.at[since] if since else 0)) * 1000 for s in runs])

    ack, base = med(field, "ack"), med(plain, "ack")
    return [
        Row(f"power-on to first acked tap (Wi-Fi + TLS + NTP, median of {repeat})", ack, "ms",
            baseline=base, ratio=ack / base if base else None,
            goal="baseline: plain MQTT, no network bring-up"),
        Row("power-on to @ready (firmware up: taps decided from here)", med(field, "ready"), "ms",
            baseline=med(plain, "ready")),
        Row("power-on to the network (Wi-Fi associated + DHCP)", med(field, "net"), "ms"),
        Row("power-on to the broker (MQTT CONNACK; TLS for the field board)", med(field, "mqtt"),
            "ms", baseline=med(plain, "mqtt")),
        Row("first tap at @ready to its ack", med(field, "ack", "ready"), "ms",
            baseline=med(plain, "ack", "ready")),
        Row(f"free heap after the first ack ({FIELD_HEAP} field board; baseline 64K plain)",
            median([s.heap for s in field]), "bytes", baseline=median([s.heap for s in plain])),
    ]  # fmt: skip


if __name__ == "__main__":
    report("power_on", run())
