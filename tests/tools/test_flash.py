"""tools/flash.py refuses a board config that fails validation before it builds or copies
anything, copies a board config as board.json, and with --dry-run never runs mpremote. No board is
needed: the port is fake and every test that reaches the copy step uses --dry-run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tools import flash
from tools.boardconfig import board_files
from tools.cli import main

BOARD = next(p for p in board_files() if p.name == "esp32-devkitc-door-mfrc522.json")
FAKE_PORT = "/dev/ttyFAKE0"


@pytest.fixture
def no_board(monkeypatch):
    """Fail the test if anything but mpy-cross is run (mpremote would touch the board)."""
    calls: list[list[str]] = []
    real_run = subprocess.run

    def guarded(cmd, *args, **kwargs):
        calls.append(list(cmd))
        if Path(cmd[0]).name != "mpy-cross":
            raise AssertionError(f"ran {cmd[0]} during a test without a board")
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(flash.subprocess, "run", guarded)
    return calls


@pytest.fixture
def no_build(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the bundle was built for an invalid config")

    monkeypatch.setattr(flash, "build_bundle", refuse)


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    """A two-file bundle instead of running mpy-cross over the firmware."""
    out = tmp_path / "bundle"

    def build(dest, root=flash.FIRMWARE):
        files = [dest / "main.py", dest / "app" / "door.mpy"]
        for f in files:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("")
        return files

    monkeypatch.setattr(flash, "build_bundle", build)
    return out


def _write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _door(**top) -> dict:
    doc = json.loads(BOARD.read_text())
    doc.update(top)
    return doc


def test_invalid_board_config_is_refused_before_anything_runs(tmp_path, capsys, no_board, no_build):
    bad = _door()
    bad["readers"][0]["pins"]["cs"] = 6  # a flash pin
    cfg = _write(tmp_path / "board.json", bad)
    rc = main(["flash", "--port", FAKE_PORT, "--config", str(cfg), "--dry-run"])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"error: board config {cfg} is invalid, nothing was copied" in err
    assert f"{cfg}: readers[0].pins.cs: error: GPIO 6 is wired to the module's SPI flash" in err
    assert no_board == []


def test_invalid_board_config_is_refused_without_dry_run_too(tmp_path, capsys, no_board, no_build):
    cfg = _write(tmp_path / "door.json", _door(colour="red"))  # has "hal": a board config
    rc = main(["flash", "--port", FAKE_PORT, "--config", str(cfg)])
    assert rc == 1
    assert f"{cfg}: colour: error: unknown key 'colour'" in capsys.readouterr().err
    assert no_board == []


def test_config_that_is_not_json_is_refused_with_line_and_column(
    tmp_path, capsys, no_board, no_build
):
    cfg = tmp_path / "board.json"
    cfg.write_text('{"hal": "esp32",\n  "chip": }\n')
    rc = main(["flash", "--port", FAKE_PORT, "--config", str(cfg), "--dry-run"])
    assert rc == 1
    assert f"error: config {cfg}:2:11: invalid JSON: Expecting value" in capsys.readouterr().err


def test_two_board_configs_are_refused(tmp_path, capsys, no_board, no_build):
    other = _write(tmp_path / "board.json", _door())
    rc = flash.run(
        flash_args(["--port", FAKE_PORT, "--config", str(BOARD), "--config", str(other)])
    )
    assert rc == 1
    assert "more than one board config given" in capsys.readouterr().err


def test_valid_board_is_copied_as_board_json_and_dry_run_copies_nothing(
    tmp_path, capsys, no_board, fake_build
):
    device = _write(tmp_path / "device.json", {"device": "gate-1", "site_key": "00"})
    rc = main(
        ["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
         "--config", str(BOARD), "--config", str(device)]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"fs cp {BOARD} :board.json" in out  # the name the firmware reads
    assert f"fs cp {device} :device.json" in out  # not a board config: its own name, unchecked
    assert f"connect {FAKE_PORT} fs mkdir :app" in out
    assert no_board == []  # dry run: mpremote never ran


def test_board_config_warnings_do_not_stop_the_flash(tmp_path, capsys, no_board, fake_build):
    doc = _door()
    doc["relays"][0]["pin"] = 12  # strapping pin: a warning
    cfg = _write(tmp_path / "board.json", doc)
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               "--config", str(cfg)])  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    assert f"{cfg}: relays[0].pin: warning: GPIO 12 is a strapping pin" in captured.err
    assert f"fs cp {cfg} :board.json" in captured.out


def test_missing_config_file_keeps_exit_code_2(tmp_path, capsys, no_build):
    rc = main(["flash", "--port", FAKE_PORT, "--config", str(tmp_path / "nope.json")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_real_build_with_dry_run_runs_only_mpy_cross(tmp_path, capsys, no_board):
    out = tmp_path / "bundle"
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(out), "--dry-run",
               "--config", str(BOARD)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert (out / "main.py").exists()
    assert {Path(c[0]).name for c in no_board} == {"mpy-cross"}
    assert f"fs cp {BOARD} :board.json" in capsys.readouterr().out


def flash_args(argv: list[str]):
    import argparse

    p = argparse.ArgumentParser()
    flash.add_arguments(p)
    return p.parse_args(argv)
