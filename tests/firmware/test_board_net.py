"""Network bring-up and NTP in the MicroPython VM (issue #14 parts 1 and 3): the unchanged
firmware over hal.simnet, the stand-in for MicroPython's `network` module, against the real
Mosquitto, and a fake NTP server on 127.0.0.1 (UDP)."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path

from test_board_mqtt import KNOWN_UID, UNKNOWN_UID, Board, check_batch, cloud, flash, next_msg

from simulator.board import DEFAULT_HEAP, micropython_binary
from simulator.romfs import firmware_image, heap_with_image
from tests.ntp_server import NtpServer

__all__ = ["cloud", "flash"]  # fixtures


# A door board with Wi-Fi does not start in the VM at 64 KiB: net.netup and hal.simnet (the
# stand-in for the `network` module a real board has in its firmware) take 5,280 bytes to import
# (ROMFS), and their 76 new names make MicroPython's qstr pool grow by a 6th pool (11,900 ->
# 19,615 bytes): 13.5 KB less free after connect (8,320 bytes at 72K vs 21,728). At 72K the
# reconnect after an outage still ran out (MemoryError building the status): 80K (D25-J).
SIMNET_HEAP = "80K"
assert DEFAULT_HEAP == "64K"


class RomBoard(Board):
    """The board as `qadam flash --romfs` leaves it and the simulator runs it: the firmware's
    bytecode in a ROMFS image, a 64 KiB heap for the rest (docs/decisions.md D11, D16), plus
    what the network stand-in costs."""

    def __init__(self, flash: Path, heap: str = SIMNET_HEAP) -> None:
        img = firmware_image()
        self.proc = subprocess.Popen(
            [
                micropython_binary(),
                "-X",
                f"heapsize={heap_with_image(heap, img)}",
                str(img.with_name("boot_rom.py")),
            ],
            cwd=flash,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()


def _configure(flash: Path, board: dict, **dev: object) -> None:
    doc = json.loads((flash / "device.json").read_text())
    doc.update(dev)
    (flash / "device.json").write_text(json.dumps(doc))
    (flash / "board.json").write_text(json.dumps({"hal": "sim", **board}))


def _status(cloud, pred, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = json.loads(next_msg(cloud, "status", max(0.5, deadline - time.monotonic())))
        if pred(st):
            return st
        assert time.monotonic() < deadline, st


def _events(board: Board, cloud) -> dict:
    try:
        return json.loads(next_msg(cloud, "events", 15))
    except AssertionError as e:
        raise AssertionError(f"{e}; board:\n" + "\n".join(board.log[-40:])) from None


def _ack_all(board: Board, cloud) -> None:
    """Ack every batch the board sends until its journal is empty."""
    while True:
        b = _events(board, cloud)
        first, last = b["events"][0]["seq"], b["events"][-1]["seq"]
        cloud.publish(
            cloud.base + "ack",
            json.dumps({"v": 1, "boot": b["boot"], "first": first, "last": last}).encode(),
            qos=1,
        )
        if board.expect("ack", last=last)["journal"] == 0:
            return


def test_wifi_second_network_loss_no_network_led_and_recovery(flash: Path, cloud) -> None:
    _configure(
        flash,
        {"sim_net": {"aps": {"school": ["pw", -61]}, "dhcp_ms": 300}},
        wifi=[{"ssid": "absent", "key": "x"}, {"ssid": "school", "key": "pw"}],
    )
    board = RomBoard(flash)
    try:
        board.expect("ready")
        # No network yet: the LED says so, and the link makes no attempt before the bring-up
        # has associated with the second network (the first does not exist in the air).
        seen = board.read_until(lambda x: x.startswith("@net "), timeout=20)
        assert '@led {"show":"no_network"}' in seen, seen
        assert not [x for x in seen if x.startswith("@mqtt")], seen
        assert json.loads(seen[-1].split(" ", 1)[1]) == {
            "if": "wlan",
            "ssid": "school",
            "ip": "10.9.0.23",
            "rssi": -61,
        }
        board.expect("mqtt", up=True)
        st = _status(cloud, lambda s: s.get("online") and "net" in s)
        assert st["net"] == {"if": "wlan", "ssid": "school", "ip": "10.9.0.23", "rssi": -61}
        assert ["net", "absent 201"] == st["err"][0][1:3]  # STAT_NO_AP_FOUND on the first

        board.send(f"tap {KNOWN_UID}")
        assert board.expect("tap")["result"] == "granted"
        _ack_all(board, cloud)

        # The access point goes away: the network is down, the MQTT link with it (the broker
        # publishes the will), the LED blinks "no network" and taps are still decided.
        board.send("net noap school")
        seen = board.read_until(lambda x: x.startswith("@net "))
        assert json.loads(seen[-1].split(" ", 1)[1]) == {"up": 0}
        seen = board.read_until(lambda x: x.startswith("@mqtt "))
        assert seen[-1] == '@mqtt {"up":false}' and '@led {"show":"no_network"}' in seen, seen
        assert _status(cloud, lambda s: not s.get("online")) == {"v": 1, "online": False}
        board.read_until(lambda x: x == "# led red on")
        board.read_until(lambda x: x == "# led red off")  # blinking, not steady
        board.send(f"tap {KNOWN_UID}")
        seen = board.read_until(lambda x: x.startswith("@tap "))
        assert json.loads(seen[-1].split(" ", 1)[1])["result"] == "granted"
        assert '@relay {"on":1}' in seen
        board.send(f"tap {UNKNOWN_UID}")
        assert board.expect("tap")["result"] == "denied"
        # The broker is reachable, the Wi-Fi is not: no connect is tried while it is down.
        board.no_line("mqtt", 2.5)
        board.send("stat")
        st = board.expect("stat")
        assert st["journal"] == 2 and st["mqtt"] is False

        # The network comes back: the board joins it again, reconnects and drains its journal.
        board.send("net ap school pw -70")
        net = board.expect("net", timeout=20)
        assert net["ssid"] == "school" and net["rssi"] == -70
        board.expect("mqtt", up=True)
        b = check_batch(json.dumps(_events(board, cloud)).encode(), boot=1)
        assert [e["seq"] for e in b["events"]] == [2, 3]
        cloud.publish(cloud.base + "ack", b'{"v":1,"boot":1,"first":2,"last":3}', qos=1)
        assert board.expect("ack")["journal"] == 0
        if [x for x in board.log if x.startswith("@led ")][-1] != '@led {"show":null}':
            board.expect("led", show=None)  # online again: the LED pattern stops
        board.quit()
    finally:
        board.kill()


def test_ethernet_cable_and_dhcp(flash: Path, cloud) -> None:
    eth = {
        "phy": "LAN8720",
        "phy_addr": 1,
        "mdc": 23,
        "mdio": 18,
        "power": 16,
        "ref_clk": 0,
        "ref_clk_mode": "in",
    }
    _configure(flash, {"eth": eth, "sim_net": {"cable": 0}})
    board = RomBoard(flash)
    try:
        board.expect("ready")
        board.expect("led", show="no_network")
        board.no_line("mqtt", 1.5)  # no cable: no broker either
        board.send("net cable 1")
        assert board.expect("net") == {"if": "eth", "ip": "10.9.0.23"}
        board.expect("mqtt", up=True)
        st = _status(cloud, lambda s: s.get("online") and "net" in s)
        assert st["net"] == {"if": "eth", "ip": "10.9.0.23"}
        board.send("net cable 0")
        assert board.expect("net") == {"up": 0}
        board.expect("mqtt", up=False)
        board.send(f"tap {KNOWN_UID}")
        assert board.expect("tap")["result"] == "granted"
        board.quit()
    finally:
        board.kill()


def test_ntp_servers_from_config_offset_and_unreachable(flash: Path, cloud) -> None:
    ntp = NtpServer(skew=1000, answering=False)
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    dead.bind(("127.0.0.1", 0))
    _configure(
        flash,
        {},
        clock_synced=False,
        ntp={
            "servers": [f"127.0.0.1:{dead.getsockname()[1]}", f"127.0.0.1:{ntp.port}"],
            "every_s": 3,
            "retry_s": 1,
        },
    )
    board = RomBoard(flash)
    try:
        board.expect("ready")
        board.expect("mqtt", up=True)
        # No NTP server answers: the board keeps deciding, its events say the clock is unsynced.
        assert _status(cloud, lambda s: s.get("online"))["clock"] == {"synced": 0}
        board.send(f"tap {KNOWN_UID}")
        assert board.expect("tap")["result"] == "granted"
        b = _events(board, cloud)
        assert b["events"][0]["sync"] == 0
        cloud.publish(
            cloud.base + "ack",
            json.dumps({"v": 1, "boot": 1, "first": 1, "last": 1}).encode(),
            qos=1,
        )
        assert board.expect("ack")["journal"] == 0

        ntp.answer.set()  # the second server starts answering: the board syncs on its retry
        st = _status(cloud, lambda s: s.get("clock", {}).get("synced") == 1, 20)
        assert abs(st["clock"]["off"] - 1000) <= 2, st
        assert abs(st["clock"]["t"] - (time.time() + 1000)) < 10, st
        assert isinstance(st["clock"]["ntp"], int)
        board.send(f"tap {UNKNOWN_UID}")
        assert board.expect("tap")["result"] == "denied"
        ev = _events(board, cloud)["events"][-1]
        assert ev["sync"] == 1 and abs(ev["t"] - (time.time() + 1000)) < 10
        # ... and again every every_s: the offset it reports now is the drift since (about 0).
        n = ntp.replies
        deadline = time.monotonic() + 20
        while ntp.replies < n + 2:
            assert time.monotonic() < deadline, ntp.replies
            time.sleep(0.2)
        board.quit()
    finally:
        board.kill()
        ntp.close()
        dead.close()
