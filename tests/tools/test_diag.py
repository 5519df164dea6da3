"""`qadam diag`: the cloud's view of a board (retained status + database) and the bench view over
the serial raw REPL of a virtual board on a pty (simulator/pty_board.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from paho.mqtt import publish

from cloud.ingest.service import Ingest
from cloud.settings import Settings
from simulator.board import firmware_bundle
from simulator.pty_board import PtyBoard
from simulator.school import SimulatedSchool
from tools.diag import format_cloud, retained_status

REPO = Path(__file__).resolve().parents[2]


def qadam(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_diag_device_from_the_cloud(database_url, topic_prefix, mqtt_addr, tmp_path):
    school = SimulatedSchool(database_url, school="dg1", students=10, staff=0, boards=1,
                             mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1], prefix=topic_prefix,
                             state_dir=tmp_path / "boards")  # fmt: skip
    ingest = Ingest(Settings(database_url=database_url, mqtt_host=mqtt_addr[0],
                             mqtt_port=mqtt_addr[1], topic_prefix=topic_prefix,
                             ingest_client_id=f"ingest-{topic_prefix}"))  # fmt: skip
    ingest.start()
    try:
        school.start()
        school.tap_many(5)
        school.wait_drained(30)
        board = school.boards[0]
        import psycopg

        with psycopg.connect(database_url) as conn:
            conn.execute(
                "INSERT INTO quarantine (topic, payload, reason, device_id)"
                " VALUES ('x', 'y', 'bad_json', %s)",
                (board.config.device,),
            )
        # Two errors as a board in the field has them: its reader stops answering for a moment,
        # and a whitelist chunk arrives broken (rejected; the board keeps its list).
        board._send("fail reader 1")
        board.wait_for(lambda: any("reader reinit" in x for x in board.output), 10, "to fail")
        dev = board.config.device
        publish.single(f"{topic_prefix}/v1/dev/{dev}/wl", b"not a chunk", qos=1,
                       hostname=mqtt_addr[0], port=mqtt_addr[1])  # fmt: skip
        board.wait_for(lambda: any('"rejected"' in x for x in board.output), 10, "to reject")
        topic = f"{topic_prefix}/v1/dev/{dev}/status"
        st = _status_until(mqtt_addr, topic, lambda s: "wl" in [e[1] for e in s.get("err", [])])
        # (the newest two: a loaded machine may have added an ack timeout before them)
        assert [e[1:] for e in st["err"]][-2:] == [["reader", "reinit", 1], ["wl", "bad_chunk", 1]]
        common = ["--database-url", database_url, "--mqtt-host", mqtt_addr[0],
                  "--mqtt-port", str(mqtt_addr[1]), "--prefix", topic_prefix]  # fmt: skip
        r = qadam("diag", board.config.device, *common)
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        assert f"device {board.config.device}" in out
        assert "online         yes" in out
        assert "firmware       0.1.0" in out
        assert "whitelist      1" in out
        assert "free heap" in out and "clock          synced" in out
        assert "events today   5" in out
        assert "quarantined    1, last" in out and "bad_json" in out
        assert "registered     school dg1" in out
        lines = out.splitlines()
        i = next(i for i, x in enumerate(lines) if x.startswith("  last errors    "))
        errors = lines[i : i + 3]
        reader = next(x for x in errors if " reader: reinit (" in x)
        wl = next(x for x in errors if " wl: bad_chunk (" in x)
        assert errors.index(reader) < errors.index(wl) and wl.endswith(" s before this status)")
        assert " s after boot, " in wl
        assert "whitelist err  last update rejected: bad_chunk" in out

        r = qadam("diag", board.config.device, "--json", *common)
        doc = json.loads(r.stdout)
        assert isinstance(doc["status"]["journal"], int) and doc["db"]["events_today"] == 5
        assert [e[1] for e in doc["status"]["err"]][-2:] == ["reader", "wl"]

        r = qadam("diag", "no-such-board", *common, "--timeout", "1")
        assert r.returncode == 1
        assert "none retained" in r.stdout and "registered     NO" in r.stdout
    finally:
        school.stop()
        ingest.stop()


def _status_until(mqtt_addr, topic: str, ok, timeout: float = 15.0) -> dict:
    """The board's retained status once `ok(status)` holds (it publishes a new error at once)."""
    deadline = time.monotonic() + timeout
    st: dict = {}
    while time.monotonic() < deadline:
        st = retained_status(mqtt_addr[0], mqtt_addr[1], topic, 2.0) or {}
        if ok(st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"status never matched: {st}")


def test_last_errors_are_formatted_with_their_age_and_count():
    st = {"online": True, "up": 100,
          "err": [[40, "link", "OSError 113", 3], [95, "wl", "crc", 1], "junk"]}  # fmt: skip
    lines = format_cloud({"device": "g1", "topic": "p/v1/dev/g1/status", "status": st})
    assert (
        "  last errors    link: OSError 113, 3 times (the last 40 s after boot, 60 s before "
        "this status)"
    ) in lines
    assert f"  {'':<14} wl: crc (95 s after boot, 5 s before this status)" in lines
    assert f"  {'':<14} unreadable: 'junk'" in lines
    st = {"online": True, "err": []}
    assert "  last errors    none since boot" in format_cloud({"device": "g", "topic": "t",
                                                               "status": st})  # fmt: skip


@pytest.fixture
def bench_board(tmp_path, topic_prefix, mqtt_addr):
    """A flashed virtual board on a pty: the firmware bundle, its config, a whitelist and some
    unacked taps in its journal (no ingest runs)."""
    flash = tmp_path / "flash"
    shutil.copytree(firmware_bundle(), flash)
    school = SimulatedSchool("postgresql://unused", school="dg2", students=5, staff=0, boards=1,
                             mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1], prefix=topic_prefix,
                             state_dir=tmp_path / "vb")  # fmt: skip
    vb = school.boards[0]
    vb.flash = flash
    from cloud.domain.cardkey import card_key
    from cloud.domain.whitelist import build_whitelist

    wl = build_whitelist(4, [(card_key(school.site_key, p.uid), "student", 0, 0, 0)
                             for p in school.people])  # fmt: skip
    vb.write_flash(wl)
    vb.start()
    for p in school.people[:3]:
        vb.tap(p.uid)
    # A reader failure in the field: the firmware appends it to err.log in the flash, where the
    # bench finds it after the board was reset (the record in RAM is gone by then).
    vb._send("fail reader 1")
    vb.wait_for(lambda: (flash / "err.log").exists(), 10, "to write err.log")
    vb.stop()
    board = PtyBoard(flash)
    board.start()
    board.wait_output("@ready", 30)
    yield board, vb
    board.stop()


def test_diag_serial_reads_the_board_on_the_bench(bench_board):
    board, vb = bench_board
    runs = board.firmware_runs
    r = qadam("diag", "--serial", board.port)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"device {vb.config.device}" in out
    assert "firmware       0.1.0" in out
    assert "boot counter   2" in out  # 1 in the simulator, 2 on the pty
    assert "whitelist      v4, 5 cards" in out
    assert "journal        3 unacked in 1 segment(s); oldest [1, 1], newest [1, 3]" in out
    assert "  last errors    " in out and " reader: reinit (boot 1, " in out  # from err.log
    assert "free heap" in out
    assert "restarted      yes" in out
    board.wait_output("@ready", 30, start=0)
    assert board.firmware_runs == runs + 1  # back to the firmware after the report


def test_diag_serial_wrong_port(tmp_path):
    r = qadam("diag", "--serial", str(tmp_path / "ttyUSB9"))
    assert r.returncode == 3
    assert "does not exist" in r.stderr
