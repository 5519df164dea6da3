"""`qadam diag`: the cloud's view of a board (retained status + database) and the bench view over
the serial raw REPL of a virtual board on a pty (simulator/pty_board.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.ingest.service import Ingest
from cloud.settings import Settings
from simulator.board import firmware_bundle
from simulator.pty_board import PtyBoard
from simulator.school import SimulatedSchool

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

        r = qadam("diag", board.config.device, "--json", *common)
        doc = json.loads(r.stdout)
        assert isinstance(doc["status"]["journal"], int) and doc["db"]["events_today"] == 5

        r = qadam("diag", "no-such-board", *common, "--timeout", "1")
        assert r.returncode == 1
        assert "none retained" in r.stdout and "registered     NO" in r.stdout
    finally:
        school.stop()
        ingest.stop()


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
    assert "free heap" in out
    assert "restarted      yes" in out
    board.wait_output("@ready", 30, start=0)
    assert board.firmware_runs == runs + 1  # back to the firmware after the report


def test_diag_serial_wrong_port(tmp_path):
    r = qadam("diag", "--serial", str(tmp_path / "ttyUSB9"))
    assert r.returncode == 3
    assert "does not exist" in r.stderr
