"""Issue #14 part 2: TLS to the broker with the CA verified. The unchanged firmware in the
MicroPython VM (its mbedTLS) against a private Mosquitto whose TLS listener serves certificates
of a CA made for the test (tests/tls_broker.py); paho plays the cloud on the broker's plain
listener. A good certificate: the board connects and its events are acked. A wrong CA, an
expired and a wrong-host certificate: refused, the reason in the board's errors ("tls"), and
the board keeps deciding and journaling taps (invariant 1)."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fwhelpers import whitelist_bytes  # noqa: I001  (tests/firmware/cases, on sys.path)
from store.cardkey import card_key
from test_board_mqtt import KNOWN_UID, SITE_KEY, UNKNOWN_UID, Board

from simulator.board import (
    DEFAULT_HEAP,
    TLS_HEAP,
    BoardConfig,
    VirtualBoard,
    micropython_binary,
)
from simulator.romfs import firmware_image, heap_with_image
from tests.tls_broker import OTHER_HOST, make_pki, tls_mosquitto


class TlsBoard(Board):
    """test_board_mqtt.Board as the simulator runs a TLS board: the ROMFS image (the firmware in
    flash, not in the heap) and simulator.board.TLS_HEAP of heap (D25-K)."""

    def __init__(self, flash: Path, heap: str = TLS_HEAP) -> None:  # noqa: D107
        image = firmware_image()
        self.proc = subprocess.Popen(
            [micropython_binary(), "-X", f"heapsize={heap_with_image(heap, image)}",
             str(image.with_name("boot_rom.py"))],
            cwd=flash, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _flash(d: Path, pki: Path, port: int, prefix: str, dev: str, **mqtt_over: object) -> Path:
    m = {
        "host": "127.0.0.1",
        "port": port,
        "prefix": prefix,
        "user": None,
        "password": None,
        "keepalive": 30,
        "tls": True,
        "ca": "ca.pem",
    }
    m.update(mqtt_over)
    doc = {
        "device": dev,
        "school": "s1",
        "site_key": SITE_KEY.hex(),
        "reader": "in",
        "relay_ms": 300,
        "ack_timeout_ms": 60000,
        "batch": 32,
        "clock_synced": True,
        "mqtt": m,
    }
    (d / "device.json").write_text(json.dumps(doc))
    (d / "board.json").write_text('{"hal":"sim"}')
    known = card_key(SITE_KEY, bytes.fromhex(KNOWN_UID))
    (d / "whitelist.bin").write_bytes(whitelist_bytes(3, [known]))
    shutil.copy(pki / "ca.pem", d / "ca.pem")
    shutil.copy(pki / "other_ca.pem", d / "other_ca.pem")
    return d


class Cloud:
    """paho on the broker's plain listener: collects the board's events and status."""

    def __init__(self, port: int, prefix: str, dev: str) -> None:
        self.msgs: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.base = f"{prefix}/v1/dev/{dev}/"
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cloud-" + prefix)
        self.c.on_message = lambda _c, _u, m: self.msgs.put((m.topic, bytes(m.payload)))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        r = self.c.subscribe([(self.base + "events", 1), (self.base + "status", 1)])
        assert r[0] == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.3)

    def next(self, leaf: str, timeout: float = 15.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                topic, payload = self.msgs.get(timeout=0.2)
            except queue.Empty:
                continue
            if topic == self.base + leaf and payload:
                return payload
        raise AssertionError(f"no message on {leaf} within {timeout}s")

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def names() -> tuple[str, str]:
    u = uuid.uuid4().hex[:8]
    return f"tls{u}", f"gate-tls-{u}"


def _run_good(
    tmp_path: Path, pki: Path, names: tuple[str, str], cert: str, **mqtt_over: object
) -> None:
    prefix, dev = names
    with tls_mosquitto(pki, cert) as (tls_port, plain_port):
        flash = _flash(tmp_path, pki, tls_port, prefix, dev, **mqtt_over)
        cloud = Cloud(plain_port, prefix, dev)
        board = TlsBoard(flash)
        try:
            assert board.expect("ready")["boot"] == 1
            board.expect("mqtt", up=True, timeout=20)
            assert json.loads(cloud.next("status"))["online"] is True
            board.send(f"tap {KNOWN_UID}")
            board.expect("relay", on=1)
            batch = json.loads(cloud.next("events"))
            assert [e["seq"] for e in batch["events"]] == [1]
            ack = b'{"v":1,"boot":1,"first":1,"last":1}'
            cloud.c.publish(cloud.base + "ack", ack, qos=1)  # down the TLS link to the board
            assert board.expect("ack") == {"boot": 1, "last": 1, "journal": 0}
            board.send("stat")
            st = board.expect("stat")
            assert st["mqtt"] is True and st["acked"] == 1
            board.quit()
        finally:
            board.kill()
            cloud.close()
        log = (pki / f"mosquitto-{cert}.log").read_text()
        assert "New client connected from 127.0.0.1" in log and f" as {dev} " in log


def test_a_board_connects_over_tls_and_its_events_are_acked(
    tmp_path: Path, pki: Path, names: tuple[str, str]
) -> None:
    _run_good(tmp_path, pki, names, "good")


def test_server_hostname_names_the_certificate_the_board_expects(
    tmp_path: Path, pki: Path, names: tuple[str, str]
) -> None:
    # The broker is reached at 127.0.0.1 but its certificate is for another name: with
    # mqtt.server_hostname set to that name the board accepts it (the CA still signs it).
    _run_good(tmp_path, pki, names, "wronghost", server_hostname=OTHER_HOST)


REFUSALS = {
    # case: (server certificate, CA file the board trusts, the reason in "err")
    "wrong_ca": ("good", "other_ca.pem", "not correctly signed by the trusted CA"),
    "expired": ("expired", "ca.pem", "validity has expired"),
    "wrong_host": ("wronghost", "ca.pem", "does not match with the expected CN"),
    "no_ca_file": ("good", "missing.pem", "no CA file missing.pem"),
}


def _err_log(flash: Path) -> list[list[str]]:
    p = flash / "err.log"
    if not p.exists():
        return []
    return [line.split(" ", 3) for line in p.read_text().splitlines()]


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_bad_certificate_is_refused_and_taps_go_on(
    tmp_path: Path, pki: Path, names: tuple[str, str], case: str
) -> None:
    cert, ca, why = REFUSALS[case]
    prefix, dev = names
    with tls_mosquitto(pki, cert) as (tls_port, plain_port):
        flash = _flash(tmp_path, pki, tls_port, prefix, dev, ca=ca)
        cloud = Cloud(plain_port, prefix, dev)
        board = TlsBoard(flash)
        try:
            assert board.expect("ready")["boot"] == 1
            # The refusal, with mbedTLS's reason, in the board's errors (status "err" and
            # err.log, protocol.md "TLS").
            board.read_until(lambda x: x.startswith("# link connect"), timeout=20)
            deadline = time.monotonic() + 10
            while not any(e[2] == "tls" for e in _err_log(flash)):
                assert time.monotonic() < deadline, _err_log(flash)
                time.sleep(0.1)
            errs = [e for e in _err_log(flash) if e[2] == "tls"]
            assert why in errs[0][3], errs
            assert not [e for e in _err_log(flash) if e[2] == "link"], _err_log(flash)
            # Invariant 1: taps are decided and journaled, with no broker.
            board.send(f"tap {KNOWN_UID}")
            board.expect("relay", on=1)
            assert board.expect("tap")["result"] == "granted"
            board.send(f"tap {UNKNOWN_UID}")
            assert board.expect("tap")["result"] == "denied"
            board.send("stat")
            st = board.expect("stat")
            assert st["mqtt"] is False and st["journal"] == 2 and st["taps"] == 2
            board.quit()
        finally:
            board.kill()
            cloud.close()
        # Nothing reached the cloud: the board never fell back to a connection without TLS.
        assert cloud.msgs.empty()


def test_the_simulator_gives_a_tls_board_the_tls_heap(tmp_path: Path) -> None:
    # D25-K: a door over TLS connects in 64 KB and then runs out in its first burst; the
    # simulator gives a board whose device file says mqtt.tls the measured budget instead.
    cfg = BoardConfig(device="d1", school="s1", site_key=SITE_KEY)
    assert VirtualBoard(cfg, tmp_path / "plain").heap == DEFAULT_HEAP
    cfg.extra["mqtt"] = dict(cfg.device_json()["mqtt"], tls=True, ca="ca.pem")
    assert VirtualBoard(cfg, tmp_path / "tls").heap == TLS_HEAP == "80K"
    assert VirtualBoard(cfg, tmp_path / "chosen", heap="100K").heap == "100K"


def test_a_dropped_tls_connection_comes_back_over_tls(
    tmp_path: Path, pki: Path, names: tuple[str, str]
) -> None:
    # The board keeps its context across reconnects: the broker drops it (another client takes
    # its client id), it reconnects over TLS by itself, and the tap taken meanwhile is delivered.
    prefix, dev = names
    with tls_mosquitto(pki) as (tls_port, plain_port):
        flash = _flash(tmp_path, pki, tls_port, prefix, dev)
        cloud = Cloud(plain_port, prefix, dev)
        board = TlsBoard(flash)
        try:
            board.expect("ready")
            board.expect("mqtt", up=True, timeout=20)
            thief = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev)
            thief.connect("127.0.0.1", plain_port)
            thief.loop_start()
            board.expect("mqtt", up=False)
            board.send(f"tap {KNOWN_UID}")
            assert board.expect("tap")["seq"] == 1
            thief.loop_stop()
            thief.disconnect()
            board.expect("mqtt", up=True, timeout=40)
            batch = json.loads(cloud.next("events", timeout=20))
            assert [e["seq"] for e in batch["events"]] == [1]
            cloud.c.publish(cloud.base + "ack", b'{"v":1,"boot":1,"first":1,"last":1}', qos=1)
            assert board.expect("ack") == {"boot": 1, "last": 1, "journal": 0}
            board.quit()
        finally:
            board.kill()
            cloud.close()
        assert not [e for e in _err_log(flash) if e[2] == "tls"], _err_log(flash)
        log = (pki / "mosquitto-good.log").read_text()
        assert log.count(f" as {dev} ") >= 3  # board, thief, board again


@pytest.mark.parametrize(("cert", "refused"), [("good", None), ("expired", "expired")])
def test_the_client_under_cpython_uses_the_same_context(
    tmp_path: Path, pki: Path, names: tuple[str, str], cert: str, refused: str | None
) -> None:
    # The firmware's MQTT client and net.tlsctx under CPython (its ssl, asyncio's streams): the
    # unit-test side of net.stream.open_connection takes the context and the server name too.
    import asyncio

    from net import tlsctx
    from net.mqtt import MQTTClient

    shutil.copy(pki / "ca.pem", tmp_path / "ca.pem")

    async def go(port: int) -> None:
        c = MQTTClient(names[1], "127.0.0.1", port)
        c.ssl = tlsctx.context(str(tmp_path / "ca.pem"))
        try:
            await c.connect(5000)
        except Exception as e:
            assert refused is not None, e
            why = tlsctx.reason(e)
            assert why is not None and refused in why, e
            return
        assert refused is None and c.connected
        await c.disconnect()

    with tls_mosquitto(pki, cert) as (tls_port, _plain_port):
        asyncio.run(go(tls_port))


def test_the_refusal_reaches_the_status_once_the_broker_is_fixed(
    tmp_path: Path, pki: Path, names: tuple[str, str]
) -> None:
    # The broker serves an expired certificate: the board refuses it and keeps its taps. The
    # broker gets a good certificate (same ports): the board connects, delivers the tap, and its
    # status tells the cloud what went wrong before ("err", protocol.md "Status").
    prefix, dev = names
    with tls_mosquitto(pki, "expired") as ports:
        flash = _flash(tmp_path, pki, ports[0], prefix, dev)
        # The board may reconnect to the fixed broker before the cloud below has subscribed
        # (its events are not retained): a short ack timeout sends the batch again.
        doc = json.loads((flash / "device.json").read_text())
        (flash / "device.json").write_text(json.dumps(dict(doc, ack_timeout_ms=3000)))
        board = TlsBoard(flash)
        board.expect("ready")
        board.read_until(lambda x: x.startswith("# link connect"), timeout=20)
        board.send(f"tap {KNOWN_UID}")
        assert board.expect("tap")["seq"] == 1
    try:
        with tls_mosquitto(pki, "good", ports=ports):
            cloud = Cloud(ports[1], prefix, dev)
            try:
                board.expect("mqtt", up=True, timeout=60)
                err = json.loads(cloud.next("status"))["err"]
                tls_errs = [e for e in err if e[1] == "tls"]
                assert tls_errs and "validity has expired" in tls_errs[0][2], err
                batch = json.loads(cloud.next("events", timeout=30))
                assert [e["seq"] for e in batch["events"]] == [1]
                board.quit()
            finally:
                cloud.c.publish(cloud.base + "status", b"", qos=1, retain=True)
                cloud.close()
    finally:
        board.kill()
