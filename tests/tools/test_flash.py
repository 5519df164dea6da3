"""tools/flash.py without a board: it refuses a config, claim token or image that is wrong before it
builds or touches anything, copies a board config as board.json, prints the exact esptool commands
in --dry-run and never runs anything but mpy-cross there, and names a missing port clearly (with
the real esptool too). The flash against a board is tests/tools/test_flash_e2e.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools import flash
from tools.boardconfig import board_files
from tools.cli import main

BOARD = next(p for p in board_files() if p.name == "esp32-devkitc-door-mfrc522.json")
BOARD_S3 = next(p for p in board_files() if p.name == "esp32s3-devkitc-door-mfrc522.json")
FAKE_PORT = "/dev/ttyFAKE0"
SCRIPT = Path(flash.__file__).resolve()  # tools/flash.py, run as a script below
DEVICE = {"device": "gate-1", "school": "s1", "site_key": "00ff"}


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
            f.write_bytes(b"M\x06\x00\x1f" if f.suffix == ".mpy" else b"")
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


def _script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python tools/flash.py ARGS` from another directory, as a technician may run it."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_flash_py_runs_on_its_own_with_the_options_of_qadam_flash(tmp_path):
    r = _script(str(SCRIPT), "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: python tools/flash.py [-h] [--port PORT]")
    assert "Technician tool: put MicroPython, the firmware" in r.stdout
    for option in ("--config CONFIG", "--cloud URL", "--dry-run", "--romfs", "--wait-online"):
        assert option in r.stdout, option
    # The same options as the console script's subcommand: one add_arguments() serves both.
    sub = subprocess.run([sys.executable, "-m", "tools.cli", "flash", "--help"],
                         cwd=SCRIPT.parents[1], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert sub.returncode == 0, sub.stderr
    assert r.stdout.split("options:", 1)[1] == sub.stdout.split("options:", 1)[1]
    # It finds the repository's packages by itself, not only through the installed project:
    # without site-packages (-S) `tools` is importable only from the path the script adds.
    r = _script("-S", str(SCRIPT), "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "usage: python tools/flash.py" in r.stdout


def test_flash_py_dry_run_refuses_an_invalid_config_with_the_reason(tmp_path):
    bad = _door()
    bad["relays"] = [{"pin": 34}]  # input-only pin as an output
    cfg = _write(tmp_path / "board.json", bad)
    out = tmp_path / "never-built"
    r = _script(str(SCRIPT), "--port", FAKE_PORT, "--config", str(cfg), "--out", str(out),
                "--dry-run", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"error: board config {cfg} is invalid, nothing was copied" in r.stderr
    assert f"{cfg}: relays[0].pin: error: GPIO 34" in r.stderr
    assert not out.exists()  # refused before the build


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
    # a real board config needs a way onto the network (D27-C): Wi-Fi in its device file
    device = _write(tmp_path / "device.json", {**DEVICE, "wifi": [{"ssid": "s", "key": "k" * 8}]})
    rc = main(
        ["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
         "--config", str(BOARD), "--config", str(device)]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"copy {BOARD} -> :board.json" in out  # the name the firmware reads
    assert f"copy {device} -> :device.json" in out
    assert "app/door.mpy -> :app/door.mpy" in out
    assert {Path(c[0]).name for c in no_board} <= {
        "mpy-cross"
    }  # no mpremote, esptool  # dry run: mpremote never ran


def test_board_config_warnings_do_not_stop_the_flash(tmp_path, capsys, no_board, fake_build):
    doc = _door()
    doc["relays"][0]["pin"] = 12  # strapping pin: a warning
    cfg = _write(tmp_path / "board.json", doc)
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               "--config", str(cfg)])  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    assert f"{cfg}: relays[0].pin: warning: GPIO 12 is a strapping pin" in captured.err
    assert f"copy {cfg} -> :board.json" in captured.out


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
    assert f"copy {BOARD} -> :board.json" in capsys.readouterr().out


def flash_args(argv: list[str]):
    import argparse

    p = argparse.ArgumentParser()
    flash.add_arguments(p)
    return p.parse_args(argv)


# -- MicroPython image (esptool) ------------------------------------------------------------------
@pytest.fixture
def image(tmp_path) -> Path:
    img = tmp_path / "ESP32_GENERIC-v1.29.0.bin"
    img.write_bytes(b"\xe9" + bytes(255))  # the ESP image magic byte, then anything
    return img


def _esptool_lines(out: str) -> list[str]:
    return [
        line.strip()[len("run ") :] for line in out.splitlines() if line.strip().startswith("run ")
    ]


@pytest.mark.parametrize(("board", "chip", "offset"), [(BOARD, "esp32", "0x1000"),
                                                       (BOARD_S3, "esp32s3", "0x0")])  # fmt: skip
def test_dry_run_prints_the_exact_esptool_commands(
    board, chip, offset, image, tmp_path, capsys, no_board, fake_build
):
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               "--image", str(image), "--config", str(board)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    esptool = flash._tool("esptool")
    assert _esptool_lines(capsys.readouterr().out) == [
        f"{esptool} --chip {chip} --port {FAKE_PORT} --baud 460800 write-flash --erase-all -z "
        f"{offset} {image}",
    ]
    assert {Path(c[0]).name for c in no_board} <= {"mpy-cross"}  # no mpremote, esptool


def test_esptool_5_knows_the_commands_we_run():
    """The command names changed in esptool 5 (erase_flash -> erase-flash): ask the real one."""
    esptool = flash._tool("esptool")
    for sub in ("write-flash",):
        result = subprocess.run([esptool, sub, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    help_text = subprocess.run(
        [esptool, "write-flash", "--help"], capture_output=True, text=True
    ).stdout
    assert "--compress" in help_text and "--erase-all" in help_text


def test_image_needs_a_chip_and_must_be_an_esp_image(tmp_path, capsys, no_board, no_build, image):
    rc = main(["flash", "--port", FAKE_PORT, "--image", str(image), "--dry-run"])
    assert rc == 1
    assert "--image needs the chip" in capsys.readouterr().err
    junk = tmp_path / "firmware.bin"
    junk.write_bytes(b"PK\x03\x04zip")
    rc = main(["flash", "--port", FAKE_PORT, "--image", str(junk), "--config", str(BOARD)])
    assert rc == 1
    assert f"{junk} is not an ESP32 firmware image" in capsys.readouterr().err
    sim = _write(tmp_path / "board.json", {"hal": "sim"})
    rc = main(["flash", "--port", FAKE_PORT, "--image", str(image), "--config", str(sim)])
    assert rc == 1
    assert "a simulated board (hal sim) takes no MicroPython image" in capsys.readouterr().err
    assert no_board == []


def test_missing_port_is_named_before_esptool_runs(image, capsys, no_board, fake_build):
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--image", str(image),
               "--config", str(BOARD)])  # fmt: skip
    assert rc == flash_exit("EXIT_PORT") == 3
    err = capsys.readouterr().err
    assert f"error: serial port {FAKE_PORT} does not exist: is the board plugged in" in err
    assert {Path(c[0]).name for c in no_board} <= {"mpy-cross"}  # never esptool


def test_real_esptool_failing_on_a_missing_port_is_reported(image, capsys):
    """No board here: the real esptool fails to open the port, and the tool says which step
    failed and why (esptool's own words), with its exit code."""
    from tools.flashing import image as esp

    cmds = esp.esptool_commands(flash._tool("esptool"), FAKE_PORT, "esp32", image)
    with pytest.raises(flash.FlashError) as info:
        esp.write_image(cmds, print)
    assert info.value.code == flash_exit("EXIT_ESPTOOL")
    msg = str(info.value)
    assert msg.startswith("esptool write-flash failed (exit 2):")
    assert f"Could not open {FAKE_PORT}, the port is busy or doesn't exist" in msg


# -- device.json, claim, wait-online --------------------------------------------------------------
@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"school": "s1", "site_key": "00"}, "device: required"),
        ({"device": "a/b", "site_key": "00"}, "device: required"),
        ({"device": "g1", "site_key": "0g"}, "site_key: required, an even number of hex digits"),
        ({"device": "g1", "site_key": "00", "mqtt": {"port": "1883"}}, "mqtt.port: must be"),
        ({"device": "g1", "site_key": "00", "mqtt": {"prefix": "a/#"}}, "mqtt.prefix: must be"),
    ],
)
def test_invalid_device_json_is_refused(doc, reason, tmp_path, capsys, no_board, no_build):
    cfg = _write(tmp_path / "device.json", doc)
    rc = main(["flash", "--port", FAKE_PORT, "--config", str(cfg)])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"error: device config {cfg} is invalid, nothing was copied" in err
    assert f"{cfg}: {reason}" in err
    assert no_board == []


def test_bad_claim_token_and_wait_online_without_device_are_refused(
    tmp_path, capsys, no_board, no_build
):
    rc = main(["flash", "--port", FAKE_PORT, "--claim", "two words"])
    assert rc == 1
    assert "--claim: not a claim token (9 characters): a claim token is 16-128" in (
        capsys.readouterr().err
    )
    rc = main(["flash", "--port", FAKE_PORT, "--config", str(BOARD), "--wait-online"])
    assert rc == 1
    assert "--wait-online needs the board's device.json" in capsys.readouterr().err
    assert no_board == []


def test_dry_run_plans_claim_and_wait_online_and_touches_no_broker(
    tmp_path, capsys, no_board, fake_build, monkeypatch
):
    import tools.flashing.online as online

    monkeypatch.setattr(online, "StatusWatch", None)  # any use would raise
    device = _write(tmp_path / "device.json", {**DEVICE, "mqtt": {"prefix": "school9"}})
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               "--claim", "abc-claim-token-0123", "--config", str(device),
               "--wait-online", "--broker", "mq.local:8883"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    claim = json.dumps({"v": 1, "token": "abc-claim-token-0123"}, separators=(",", ":")).encode()
    claim += b"\n"
    import hashlib

    sha = hashlib.sha256(claim).hexdigest()[:12]
    assert f"copy --claim -> :claim.json ({len(claim)} B, sha256 {sha})" in out
    assert "wait up to 60s for online on school9/v1/dev/gate-1/status at mq.local:8883" in out
    assert {Path(c[0]).name for c in no_board} <= {"mpy-cross"}  # no mpremote, esptool


def test_bundle_mpy_version_reads_the_headers(tmp_path):
    a, b = tmp_path / "a.mpy", tmp_path / "b.mpy"
    a.write_bytes(b"M\x06\x00\x1f")
    b.write_bytes(b"M\x05\x00\x1f")
    assert flash.bundle_mpy_version([a, tmp_path / "main.py"]) == 6
    with pytest.raises(flash.FlashError, match=r"mixes .mpy versions \[5, 6\]"):
        flash.bundle_mpy_version([a, b])


def flash_exit(name: str) -> int:
    import tools.flashing

    return getattr(tools.flashing, name)
