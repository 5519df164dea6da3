"""`qadam flash` inputs (issue #13 items 11, 12, 16): a claim token that starts with '-' goes
through the real CLI parser (`--claim TOKEN`, `--claim=TOKEN`, `--claim-file FILE|-`); a token
in the wrong format is refused with the cloud's own rule before the board is opened; a
configuration is validated by its content whatever its file name."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from cloud.domain.formats import check_claim_token
from tools import flash
from tools.cli import main
from tools.flashing import board as board_mod

FAKE_PORT = "/dev/ttyFAKE0"
DEVICE = {"device": "gate-1", "school": "s1", "site_key": "00ff"}
DASH_TOKEN = "-Zq9" + "a1B2_c3D4-" * 4  # 44 characters, the cloud's format, starts with '-'


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    """A two-file bundle instead of running mpy-cross over the firmware."""

    def build(dest, root=flash.FIRMWARE):
        files = [dest / "main.py", dest / "app" / "door.mpy"]
        for f in files:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"M\x06\x00\x1f" if f.suffix == ".mpy" else b"")
        return files

    monkeypatch.setattr(flash, "build_bundle", build)
    return tmp_path / "bundle"


@pytest.fixture
def no_board(monkeypatch):
    """Fail the test if the serial port is checked or the board is opened."""

    def refuse(*a, **k):
        raise AssertionError("the board was opened")

    monkeypatch.setattr(board_mod, "Board", refuse)
    monkeypatch.setattr(board_mod, "check_port", refuse)


def _write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _claim_line(token: str) -> str:
    claim = json.dumps({"v": 1, "token": token}, separators=(",", ":")).encode() + b"\n"
    sha = hashlib.sha256(claim).hexdigest()[:12]
    return f"copy --claim -> :claim.json ({len(claim)} B, sha256 {sha})"


# -- item 11: tokens and the CLI do not collide ----------------------------------------------------
def test_dash_token_is_valid_for_the_cloud() -> None:
    assert check_claim_token(DASH_TOKEN) == DASH_TOKEN  # the cloud could have issued it (before)


@pytest.mark.parametrize("form", ["space", "equals"])
def test_claim_token_starting_with_dash_through_the_real_cli(
    form, tmp_path, capsys, fake_build, no_board
):
    device = _write(tmp_path / "device.json", DEVICE)
    claim = ["--claim", DASH_TOKEN] if form == "space" else [f"--claim={DASH_TOKEN}"]
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               *claim, "--config", str(device)])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert _claim_line(DASH_TOKEN) in out


def test_claim_token_starting_with_dash_through_the_script_parser(
    tmp_path, capsys, fake_build, no_board
):
    """`python tools/flash.py` parses with its own parser (flash.main)."""
    device = _write(tmp_path / "device.json", DEVICE)
    rc = flash.main(["--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
                     "--claim", DASH_TOKEN, "--config", str(device)])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert _claim_line(DASH_TOKEN) in out


def test_claim_file_and_stdin(tmp_path, capsys, fake_build, no_board, monkeypatch):
    device = _write(tmp_path / "device.json", DEVICE)
    token_file = tmp_path / "claim.txt"
    token_file.write_text(DASH_TOKEN + "\n")
    base = ["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
            "--config", str(device)]  # fmt: skip
    assert main([*base, "--claim-file", str(token_file)]) == 0
    assert _claim_line(DASH_TOKEN) in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(DASH_TOKEN + "\n"))
    assert main([*base, "--claim-file", "-"]) == 0
    out, err = capsys.readouterr()
    assert _claim_line(DASH_TOKEN) in out
    assert DASH_TOKEN not in err
    token_file.write_text("two\nlines\n")
    assert main([*base, "--claim-file", str(token_file)]) == 1
    assert "expected the claim token on one line, found 2" in capsys.readouterr().err


def test_a_forgotten_token_is_still_an_error_not_the_next_option(capsys, no_board) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["flash", "--port", FAKE_PORT, "--claim", "--cloud", "https://c.example"])
    assert exc.value.code == 2
    assert "argument --claim: expected one argument" in capsys.readouterr().err


def test_claim_and_claim_file_exclude_each_other(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["flash", "--claim", "a" * 20, "--claim-file", str(tmp_path / "t")])
    assert "not allowed with argument" in capsys.readouterr().err


# -- item 16: one claim-token rule, checked before the board is opened -----------------------------
@pytest.mark.parametrize("token", ["wrongtoken123", "has space in it 0123", "x" * 129])
def test_a_token_the_cloud_would_refuse_is_refused_before_the_board(
    token, tmp_path, capsys, fake_build, no_board
):
    device = _write(tmp_path / "device.json", DEVICE)
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build),
               f"--claim={token}", "--config", str(device)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1
    assert f"error: --claim: not a claim token ({len(token)} characters): a claim token is " in err
    assert token not in err  # a secret is not echoed


def test_a_bad_token_with_cloud_is_refused_before_the_board_and_the_cloud(
    tmp_path, capsys, fake_build, no_board, monkeypatch
):
    from tools.flashing import provision

    def refuse(*a, **k):
        raise AssertionError("the cloud was called")

    monkeypatch.setattr(provision.urllib.request, "urlopen", refuse)
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--cloud",
               "https://c.example", "--claim", "wrongtoken123", "--device", "gate-1"])  # fmt: skip
    assert rc == 1
    assert "--claim: not a claim token (13 characters)" in capsys.readouterr().err


# -- item 12: a configuration is validated by its content ------------------------------------------
def test_a_device_config_under_another_name_is_validated(tmp_path, capsys, fake_build, no_board):
    bad = _write(tmp_path / "other-name.json", {"device": "a/b", "site_key": "zz"})
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               "--config", str(bad)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1
    assert f"error: device config {bad} is invalid, nothing was copied" in err
    assert f"{bad}: device: required, 1-64 characters" in err
    assert f"{bad}: site_key: required, an even number of hex digits" in err


def test_a_valid_device_config_under_another_name_goes_to_device_json(
    tmp_path, capsys, fake_build, no_board
):
    good = _write(tmp_path / "gate-1.json", DEVICE)
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               "--config", str(good)])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"copy {good} -> :device.json" in out  # the only name the firmware reads


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"colour": "red"}, "device: required"),  # neither a board nor a device config
        ([1, 2], "must be a JSON object"),
        ({"v": 1, "token": "a" * 20}, "a claim token is given with --claim=TOKEN"),
    ],
)
def test_other_json_is_refused_whatever_its_name(
    doc, reason, tmp_path, capsys, fake_build, no_board
):
    cfg = _write(tmp_path / "settings.json", doc)
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--config", str(cfg)])
    assert rc == 1
    assert reason in capsys.readouterr().err


def test_a_board_config_and_a_device_config_under_any_names(tmp_path, capsys, fake_build, no_board):
    from tools.boardconfig import board_files

    board = next(p for p in board_files() if p.name == "esp32-devkitc-door-mfrc522.json")
    # a real board config needs a way onto the network (D27-C): Wi-Fi in its device file
    dev = _write(tmp_path / "school-7-gate.json", {**DEVICE, "wifi": [{"ssid": "s", "key": ""}]})
    second = _write(tmp_path / "another.json", DEVICE)
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               "--config", str(board), "--config", str(dev)])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"copy {board} -> :board.json" in out and f"copy {dev} -> :device.json" in out
    # two device configs would both be device.json
    rc = main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), "--dry-run",
               "--config", str(dev), "--config", str(second)])  # fmt: skip
    assert rc == 1
    assert "would both be written as device.json" in capsys.readouterr().err
