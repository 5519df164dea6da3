"""`qadam flash` against a virtual board on a pseudo-terminal (simulator/pty_board.py): the real
mpremote transport, the real raw REPL of the MicroPython unix port, the firmware booting from the
flashed files with `hal: sim`, and the real broker (Mosquitto, 127.0.0.1:1883) carrying the
board's retained online status. No serial hardware."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from simulator.pty_board import PtyBoard
from tools import flash
from tools.cli import main
from tools.flashing import (
    EXIT_MPY_MISMATCH,
    EXIT_NO_MICROPYTHON,
    EXIT_PORT,
    EXIT_VERIFY,
)

REPO = Path(__file__).resolve().parents[2]

CLAIM = "abc-claim-token-0123"  # the cloud's claim-token format


@pytest.fixture(scope="module")
def firmware(tmp_path_factory) -> Path:
    """A snapshot of firmware/, so a re-run in a test sees the same sources even while someone
    edits the checkout."""
    src = tmp_path_factory.mktemp("src") / "firmware"
    shutil.copytree(flash.FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__"))
    return src


@pytest.fixture
def board(tmp_path):
    b = PtyBoard(tmp_path / "flash")
    b.start()
    b.wait_output(">>> ", 10)  # an empty flash: the board sits at the REPL
    yield b
    b.stop()


@pytest.fixture
def configs(tmp_path, topic_prefix, mqtt_addr, firmware) -> dict[str, Path]:
    board_json = tmp_path / "cfg" / "board.json"
    board_json.parent.mkdir()
    board_json.write_text(json.dumps({"hal": "sim"}))
    device = tmp_path / "cfg" / "device.json"
    device.write_text(
        json.dumps(
            {
                "device": "gate-e2e",
                "school": "s1",
                "site_key": "00112233445566778899aabbccddeeff",
                "clock_synced": True,
                "mqtt": {"host": mqtt_addr[0], "port": mqtt_addr[1], "prefix": topic_prefix},
            }
        )
    )
    return {"board": board_json, "device": device, "firmware": firmware}


def qadam_flash(port: str, tmp_path: Path, *extra: str, timeout: float = 120):
    """The technician's command line, in a process of its own."""
    cmd = [sys.executable, "-m", "tools.cli", "flash", "--port", port,
           "--out", str(tmp_path / "out"), *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def cfg_args(configs, *extra: str) -> list[str]:
    return ["--firmware", str(configs["firmware"]), "--config", str(configs["board"]),
            "--config", str(configs["device"]), *extra]  # fmt: skip


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def retained_status(addr, topic: str, timeout: float = 5.0) -> dict:
    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)

    def on_message(client, userdata, msg):
        if msg.retain:
            got.append(msg.payload)
            done.set()

    c.on_message = on_message
    c.connect(*addr)
    c.subscribe(topic, 1)
    c.loop_start()
    try:
        assert done.wait(timeout), f"no retained status on {topic}"
    finally:
        c.loop_stop()
        c.disconnect()
    return json.loads(got[0])


def test_flash_an_empty_board_until_it_is_online_then_rerun_copies_nothing(
    board, configs, tmp_path, topic_prefix, mqtt_addr
):
    r = qadam_flash(board.port, tmp_path, *cfg_args(configs, "--claim", CLAIM, "--wait-online",
                                                   "--online-timeout", "30"))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    # every file of the bundle is on the board's flash, byte for byte
    out = tmp_path / "out"
    bundle_files = [p for p in out.rglob("*") if p.is_file()]
    assert f"built {len(bundle_files)} files in {out}" in r.stdout
    assert {f.relative_to(out).as_posix() for f in bundle_files} >= {"boot.py", "main.py"}
    for f in bundle_files:
        rel = f.relative_to(out)
        assert sha(board.flash / rel) == sha(f), rel
    assert json.loads((board.flash / "board.json").read_text()) == {"hal": "sim"}
    assert (board.flash / "device.json").read_bytes() == configs["device"].read_bytes()
    assert json.loads((board.flash / "claim.json").read_text()) == {"v": 1, "token": CLAIM}
    n = len(bundle_files) + 3
    assert f"0 of {n} files already on the board; copying {n}" in r.stdout
    assert f"all {n} verified by sha256" in r.stdout
    assert "%" in r.stderr  # progress
    # the board runs the flashed firmware and the cloud sees it online
    topic = f"{topic_prefix}/v1/dev/gate-e2e/status"
    assert f"waiting for {topic}" in r.stdout
    assert board.state == "firmware" and board.firmware_runs == 1
    board.wait_output('@ready {"wl":0,"journal":0,"dev":"gate-e2e","boot":1}', 5)
    status = retained_status(mqtt_addr, topic)
    assert status["online"] is True and status["boot"] == 1
    assert '"boot": 1' in r.stdout.split("online: ", 1)[1]

    # a re-run finds everything in place: nothing copied, and the board comes online again
    r = qadam_flash(board.port, tmp_path, *cfg_args(configs, "--claim", CLAIM, "--wait-online",
                                                   "--online-timeout", "30"))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{n} of {n} files already on the board; copying 0" in r.stdout
    assert "copied 0 of" in r.stdout
    assert retained_status(mqtt_addr, topic)["boot"] == 2  # rebooted: a new boot came online
    assert board.firmware_runs == 2


def test_only_what_changed_is_copied_and_stale_sources_are_removed(board, configs, tmp_path):
    r = qadam_flash(board.port, tmp_path, *cfg_args(configs))
    assert r.returncode == 0, r.stdout + r.stderr
    board.stop()  # power off, change the flash behind the tool's back, power on
    (board.flash / "net" / "sync.mpy").write_bytes(b"M\x06garbage")
    (board.flash / "app" / "door.py").write_text("raise ImportError('stale source')\n")
    os.remove(board.flash / "device.json")
    board.start()
    r = qadam_flash(board.port, tmp_path, *cfg_args(configs))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "copying 2" in r.stdout and "copied 2 of" in r.stdout
    assert "removing 1 stale source file(s) that would shadow the bytecode: app/door.py" in r.stdout
    assert not (board.flash / "app" / "door.py").exists()
    assert sha(board.flash / "net" / "sync.mpy") == sha(tmp_path / "out" / "net" / "sync.mpy")
    board.wait_output("@ready", 20)  # the firmware boots with the repaired files


def test_dry_run_touches_nothing(board, configs, tmp_path):
    boots = board.boots
    mark = board.mark()
    r = qadam_flash(board.port, tmp_path, *cfg_args(configs, "--claim", CLAIM, "--dry-run"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dry run: nothing is touched" in r.stdout
    assert "-> :claim.json" in r.stdout
    time.sleep(0.3)
    assert list(board.flash.iterdir()) == []
    assert board.boots == boots and board.mark() == mark  # nobody even spoke to it


def test_wrong_port_is_a_clear_error(configs, tmp_path):
    r = qadam_flash(str(tmp_path / "ttyUSB9"), tmp_path, *cfg_args(configs))
    assert r.returncode == EXIT_PORT == 3
    assert f"error: serial port {tmp_path / 'ttyUSB9'} does not exist" in r.stderr
    not_a_tty = tmp_path / "cfg" / "board.json"
    r = qadam_flash(str(not_a_tty), tmp_path, *cfg_args(configs))
    assert r.returncode == EXIT_PORT
    assert f"{not_a_tty} is not a serial port" in r.stderr


def test_invalid_config_touches_no_board(board, configs, tmp_path):
    configs["board"].write_text(json.dumps({"hal": "esp32", "chip": "esp32"}))
    mark = board.mark()
    r = qadam_flash(board.port, tmp_path, *cfg_args(configs))
    assert r.returncode == 1
    assert f"error: board config {configs['board']} is invalid, nothing was copied" in r.stderr
    assert "readers: error: required key missing" in r.stderr
    assert board.mark() == mark and list(board.flash.iterdir()) == []


@pytest.fixture
def garbage_port():
    """A serial device that is not MicroPython: it echoes what it gets, mangled, plus noise."""
    master, slave = os.openpty()
    import tty

    tty.setraw(slave)
    stop = threading.Event()

    def device():
        import select

        while not stop.is_set():
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                data = os.read(master, 1024)
                os.write(master, b"\xff?" + data[::-1] + b"ERR\r\n")
            else:
                os.write(master, b"\x00~")

    t = threading.Thread(target=device, daemon=True)
    t.start()
    yield os.ttyname(slave)
    stop.set()
    t.join(2)
    os.close(master)
    os.close(slave)


def test_a_device_without_micropython_is_a_clear_error(garbage_port, configs, tmp_path):
    r = qadam_flash(garbage_port, tmp_path, *cfg_args(configs, "--timeout", "2"), timeout=60)
    assert r.returncode == EXIT_NO_MICROPYTHON == 4
    assert f"error: the device on {garbage_port} does not speak MicroPython's raw REPL" in r.stderr
    assert "it answered b'" in r.stderr
    assert "--image" in r.stderr


# -- in process: failures a healthy virtual board cannot produce on its own -----------------------
def test_board_with_another_mpy_version_is_refused(board, configs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(flash, "bundle_mpy_version", lambda files: 5)
    rc = main(["flash", "--port", board.port, "--out", str(tmp_path / "out"), *cfg_args(configs)])
    assert rc == EXIT_MPY_MISMATCH == 5
    err = capsys.readouterr().err
    assert "which loads .mpy v6.3, but" in err and "produces v5: nothing was copied" in err
    assert sorted(p.name for p in board.flash.iterdir()) == []


def test_a_file_that_does_not_hash_right_fails_the_flash(
    board, configs, tmp_path, capsys, monkeypatch
):
    from tools.flashing.board import Board

    real = Board.write

    def flaky(self, dest, data, progress):
        real(self, dest, data[:-1] + bytes([data[-1] ^ 1]) if dest == "net/mqtt.mpy" else data,
             progress)  # fmt: skip

    monkeypatch.setattr(Board, "write", flaky)
    rc = main(["flash", "--port", board.port, "--out", str(tmp_path / "out"), *cfg_args(configs)])
    assert rc == EXIT_VERIFY == 6
    assert "1 file(s) on the board do not match what was sent: net/mqtt.mpy" in (
        capsys.readouterr().err
    )
