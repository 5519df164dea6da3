"""Issue #13 items 6 and 7 on a whole board: the unchanged firmware in the MicroPython VM against
the real Mosquitto, paho playing the cloud and the attacker. A forged ack on an open broker
erases nothing; a board with an ack key takes only acks with the cloud's mac; a fresh flash
starts above the boot floor of its device file; the floor command on connect moves the boot."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from test_board_mqtt import DEVICE, Board, check_batch, cloud, flash, next_msg

__all__ = ["cloud", "flash"]  # fixtures
KEY = bytes(range(100, 132))


def _device(flash: Path, **over: object) -> None:
    p = flash / "device.json"
    doc = json.loads(p.read_text())
    doc.update(over)
    p.write_text(json.dumps(doc))


def _mac(msg: bytes) -> str:
    return hmac.new(KEY, msg, hashlib.sha256).hexdigest()[:32]


def _stat(board: Board) -> dict:
    board.send("stat")
    return board.expect("stat")


def _taps(board: Board, n: int) -> list[dict]:
    # Different cards (denied: not on the list), so the 1.5 s debounce of one card never applies.
    out = []
    for _ in range(n):
        _taps.uid += 1
        board.send(f"tap {_taps.uid:08x}")
        out.append(board.expect("tap"))
    return out


_taps.uid = 0x0B000000  # type: ignore[attr-defined]


def test_the_issues_forged_ack_erases_no_unsent_tap(flash: Path, cloud) -> None:
    # Issue #13 item 6, as reported: the ingest is down (nobody acks), an anonymous client reads
    # the boot from the retained status and acks everything. Before: the journal emptied.
    board = Board(flash)
    try:
        boot = board.expect("ready")["boot"]
        board.expect("mqtt", up=True)
        assert json.loads(next_msg(cloud, "status"))["boot"] == boot
        _taps(board, 3)
        seqs = [e["seq"] for e in check_batch(next_msg(cloud, "events"), boot=boot)["events"]]
        assert seqs[0] == 1  # one batch in flight (the ack timeout is a minute): maybe 1..3
        forged = b'{"v":1,"boot":%d,"first":1,"last":1000000000}' % boot
        cloud.publish(cloud.base + "ack", forged, qos=1)
        board.read_until(lambda x: x.startswith("# sync ack") and "unsent" in x)
        st = _stat(board)
        assert st["journal"] == 3 and st["acked"] == 0
        # The board's errors say so (the retained status, protocol.md "Status" "err").
        err = json.loads(next_msg(cloud, "status"))["err"]
        assert [e[1:3] for e in err][-1] == ["ack", "unsent"]
        # The real ack of what was published still trims.
        real = b'{"v":1,"boot":%d,"first":1,"last":%d}' % (boot, seqs[-1])
        cloud.publish(cloud.base + "ack", real, qos=1)
        assert board.expect("ack")["journal"] == 3 - len(seqs)
        board.quit()
    finally:
        board.kill()


def test_a_board_with_an_ack_key_takes_only_the_clouds_acks(flash: Path, cloud) -> None:
    _device(flash, ack_key=KEY.hex())
    board = Board(flash)
    try:
        boot = board.expect("ready")["boot"]
        board.expect("mqtt", up=True)
        _taps(board, 2)
        last = check_batch(next_msg(cloud, "events"), boot=boot)["events"][-1]["seq"]
        exact = {"v": 1, "boot": boot, "first": 1, "last": last}
        msg = b"%s|%d|1|%d" % (DEVICE.encode(), boot, last)
        for bad in (exact, dict(exact, mac="0" * 32), dict(exact, mac=_mac(msg + b"0"))):
            cloud.publish(cloud.base + "ack", json.dumps(bad), qos=1)
            board.read_until(lambda x: x.startswith("# sync ack") and x.endswith(" mac"))
        assert _stat(board)["journal"] == 2
        cloud.publish(cloud.base + "ack", json.dumps(dict(exact, mac=_mac(msg))), qos=1)
        assert board.expect("ack") == {"boot": boot, "last": last, "journal": 2 - last}
        board.quit()
    finally:
        board.kill()


def test_a_fresh_flash_starts_above_the_floor_of_its_device_file(flash: Path, cloud) -> None:
    assert not (flash / "boot.cnt").exists()  # erase-flash: no counter
    _device(flash, boot_floor=40)
    board = Board(flash)
    try:
        assert board.expect("ready")["boot"] == 41
        board.expect("mqtt", up=True)
        assert _taps(board, 1)[0]["boot"] == 41
        board.quit()
    finally:
        board.kill()
    assert (flash / "boot.cnt").read_text().strip() == "41"
    board = Board(flash)  # the next boot counts on from there
    try:
        assert board.expect("ready")["boot"] == 42
        board.quit()
    finally:
        board.kill()


def test_the_floor_command_moves_a_running_board_past_the_clouds_boot(flash: Path, cloud) -> None:
    _device(flash, ack_key=KEY.hex())
    board = Board(flash)
    try:
        assert board.expect("ready")["boot"] == 1  # a re-flashed board, counter restarted
        board.expect("mqtt", up=True)
        old = _taps(board, 2)  # journaled before it knew: these keep their identity
        assert [(t["boot"], t["seq"]) for t in old] == [(1, 1), (1, 2)]
        # Without the mac (a stranger on an open broker) the command is refused.
        cloud.publish(cloud.base + "cmd", b'{"v":1,"id":"f1","cmd":"floor","boot":40}', qos=1)
        assert json.loads(board.expect("cmd")["res"]) == {
            "v": 1, "id": "f1", "ok": False, "error": "bad_mac"}  # fmt: skip
        mac = _mac(b"%s|40" % DEVICE.encode())
        cmd = {"v": 1, "id": "floor-40", "cmd": "floor", "boot": 40, "mac": mac}
        cloud.publish(cloud.base + "cmd", json.dumps(cmd), qos=1)
        assert board.expect("boot") == {"boot": 41, "floor": 40}
        assert json.loads(board.expect("cmd")["res"])["ok"] is True
        new = _taps(board, 1)[0]
        assert (new["boot"], new["seq"]) == (41, 1)
        st = json.loads(next_msg(cloud, "status"))
        while st.get("boot") != 41:  # the retained status says the new boot at once
            st = json.loads(next_msg(cloud, "status"))
        assert (flash / "boot.cnt").read_text().strip() == "41"
        board.quit()
    finally:
        board.kill()
