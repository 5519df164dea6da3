"""Issue #14 item 4, the flasher's side (D27-C): `qadam flash --cloud ... --wifi SSID=KEY` writes
a complete device file (Wi-Fi, broker with TLS and its CA, NTP, time zone offset, credentials)
and ca.pem; every network setting is checked offline first, with a clear error and nothing
touched; a real board config with neither Wi-Fi nor Ethernet is refused; keys are never printed.
Against the stand-in cloud of test_flash_provision.py and a stand-in board (no serial port)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from flash_standin import board
from test_flash_provision import ANSWER, TOKEN, fake_build, no_cloud, server

from tests.tls_broker import make_pki
from tools import flash
from tools.cli import main
from tools.flashing import EXIT_CLOUD, EXIT_CONFIG, netcfg, provision

__all__ = ["board", "fake_build", "no_cloud", "server"]  # fixtures
FAKE_PORT = "/dev/ttyFAKE0"
BOARDS = flash.REPO / "board-configs"
WIFI_BOARD = BOARDS / "esp32-devkitc-door-mfrc522.json"
ETH_BOARD = BOARDS / "wt32-eth01-door-wiegand.json"
KEY = "correct-horse-battery"  # must never appear in any output
CA_PEM = (make_pki(Path(tempfile.mkdtemp(prefix="qadam-pki-"))) / "ca.pem").read_text()
TLS_ANSWER = {
    **ANSWER,
    "mqtt": {**ANSWER["mqtt"], "tls": True, "ca_pem": CA_PEM, "server_hostname": "mq.example"},
    "ntp": ["kz.pool.ntp.org", "10.0.0.1:123"],
    "timezone": "Asia/Almaty",
    "tz_offset_min": 300,
    "mode": "door",
}


def _flash(fake_build, *argv: str) -> int:
    return main(["flash", "--port", FAKE_PORT, "--out", str(fake_build), *argv])


def test_cloud_and_wifi_write_the_complete_device_file_and_the_ca(
    server, board, fake_build, capsys
):
    server["body"] = json.dumps(TLS_ANSWER).encode()
    rc = _flash(fake_build, "--config", str(WIFI_BOARD), "--cloud", server["url"],
                "--claim", TOKEN, "--device", "gate-1",
                "--wifi", f"school-staff={KEY}", "--wifi", "school-guest=")  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(board.files["device.json"])
    assert doc["wifi"] == [
        {"ssid": "school-staff", "key": KEY}, {"ssid": "school-guest", "key": ""}
    ]  # fmt: skip
    assert doc["mqtt"] == {
        "host": "mq.example", "port": 8883, "prefix": "school9", "user": "gate-1",
        "password": "s3cret-pw-do-not-print", "keepalive": 30, "tls": True, "ca": "ca.pem",
        "server_hostname": "mq.example",
    }  # fmt: skip
    assert doc["ntp"] == {"servers": ["kz.pool.ntp.org", "10.0.0.1:123"]}
    assert (doc["tz_offset_min"], doc["mode"], doc["device"]) == (300, "door", "gate-1")
    assert board.files["ca.pem"] == CA_PEM.encode()
    assert board.files["board.json"] == WIFI_BOARD.read_bytes()
    assert flash._check_device(Path("device.json"), doc) == []
    # the open network is warned about, loudly; keys and the password never printed
    assert "WARNING: Wi-Fi network 'school-guest' is OPEN" in err
    assert "'school-staff', 'school-guest' (open)" in out
    assert KEY not in out + err and "s3cret" not in out + err
    assert "TLS verifying mq.example" in out and "Asia/Almaty UTC+5" in out


def test_an_ethernet_board_needs_no_wifi(server, board, fake_build, capsys):
    server["body"] = json.dumps(TLS_ANSWER).encode()
    rc = _flash(fake_build, "--config", str(ETH_BOARD), "--cloud", server["url"],
                "--claim", TOKEN, "--device", "gate-1")  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(board.files["device.json"])
    assert "wifi" not in doc and doc["mqtt"]["tls"] is True


def test_a_board_without_wifi_or_ethernet_is_refused_before_the_cloud(
    no_cloud, board, fake_build, capsys
):
    rc = _flash(fake_build, "--config", str(WIFI_BOARD), "--cloud", "https://c.example",
                "--claim", TOKEN, "--device", "gate-1")  # fmt: skip
    err = capsys.readouterr().err
    assert rc == EXIT_CONFIG
    assert 'has no Ethernet ("eth") and no Wi-Fi network was given' in err
    assert "--wifi SSID=KEY" in err and board.files == {}
    # without --cloud, a device.json for a real board must carry its networks too
    dev = fake_build.parent / "device.json"
    dev.write_text(json.dumps({"device": "gate-1", "site_key": "00ff"}))
    rc = _flash(fake_build, "--config", str(WIFI_BOARD), "--config", str(dev), "--dry-run")
    err = capsys.readouterr().err
    assert rc == EXIT_CONFIG and '"wifi": [{"ssid": ..., "key": ...}] in the device.json' in err


BAD_WIFI = [
    (["--wifi", "x" * 33 + "=" + KEY], "the SSID must be 1-32 bytes (UTF-8), not 33"),
    (["--wifi", "ы" * 17 + "=" + KEY], "the SSID must be 1-32 bytes (UTF-8), not 34"),
    (["--wifi", "=" + KEY], "the SSID must be 1-32 bytes (UTF-8), not 0"),
    (["--wifi", "school=short"], "the key (5 characters) must be 8-63 printable ASCII"),
    (["--wifi", "school=" + "k" * 64], "the key (64 characters) must be 8-63"),
    (["--wifi", "school=" + KEY + "\u00e9"], "must be 8-63 printable ASCII"),
    (["--wifi", "school"], "--wifi #1: expected SSID=KEY"),
    (["--wifi", f"a={KEY}", "--wifi", f"a={KEY}"], "SSID 'a' given twice"),
    (["--wifi", f"école n°7 {{}}={KEY}"], None),  # fine: any characters in an SSID
]


@pytest.mark.parametrize(("argv", "message"), BAD_WIFI)
def test_bad_wifi_is_refused_offline_and_never_echoes_the_key(
    argv, message, no_cloud, board, fake_build, capsys
):
    rc = _flash(fake_build, "--config", str(WIFI_BOARD), "--cloud", "https://c.example",
                "--claim", TOKEN, "--device", "gate-1", "--dry-run", *argv)  # fmt: skip
    out, err = capsys.readouterr()
    if message is None:
        assert rc == 0, err
        return
    assert rc == EXIT_CONFIG and message in err and "nothing was touched" in err
    assert KEY not in out + err and "short" not in err.replace("--wifi", "")


def test_wifi_file_and_hex_psk(tmp_path, no_cloud, board, fake_build, capsys):
    psk = "0123456789abcdef" * 4
    f = tmp_path / "wifi.json"
    f.write_text(json.dumps([{"ssid": "a=b", "key": psk}]))
    argv = ["--config", str(WIFI_BOARD), "--cloud", "https://c.example", "--claim", TOKEN,
            "--device", "gate-1", "--dry-run"]  # fmt: skip
    assert _flash(fake_build, *argv, "--wifi-file", str(f)) == 0
    assert "Wi-Fi 'a=b'" in capsys.readouterr().out
    f.write_text("[{'ssid': 1}]")
    assert _flash(fake_build, *argv, "--wifi-file", str(f)) == EXIT_CONFIG
    assert "cannot read it (not valid JSON)" in capsys.readouterr().err
    f.write_text(json.dumps([{"ssid": "a", "key": psk, "hidden": True}]))
    assert _flash(fake_build, *argv, "--wifi-file", str(f)) == EXIT_CONFIG
    assert 'an object with "ssid" and "key" only' in capsys.readouterr().err
    # --wifi without --cloud: the device.json given carries the networks
    assert _flash(fake_build, "--dry-run", "--wifi", f"a={KEY}") == EXIT_CONFIG
    assert "--wifi/--wifi-file go with --cloud" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mqtt": {**TLS_ANSWER["mqtt"], "ca_pem": CA_PEM[:120]}}, "does not parse as PEM"),
        ({"mqtt": {**TLS_ANSWER["mqtt"], "ca_pem": None}}, "TLS without a CA certificate"),
        ({"ntp": ["bad host"]}, "an NTP server is not HOST or HOST:PORT"),
        ({"tz_offset_min": 5000}, "tz_offset_min 5000 is out of range"),
    ],
)
def test_an_unusable_answer_writes_nothing(change, message, server, board, fake_build, capsys):
    server["body"] = json.dumps({**TLS_ANSWER, **change}).encode()
    rc = _flash(fake_build, "--config", str(WIFI_BOARD), "--cloud", server["url"],
                "--claim", TOKEN, "--device", "gate-1", "--wifi", f"s={KEY}")  # fmt: skip
    err = capsys.readouterr().err
    assert rc == EXIT_CLOUD and message in err and "nothing was written" in err
    assert board.files == {}


def test_a_plain_answer_drops_a_templates_tls():
    p = provision._parse("gate-1", json.dumps(ANSWER).encode())
    template = {"mqtt": {"tls": True, "ca": "x.pem", "server_hostname": "h"}, "ntp": ["a"]}
    files = provision.device_files(template, p)
    doc = json.loads(files["device.json"])
    assert set(files) == {"device.json"} and "tls" not in doc["mqtt"] and "ca" not in doc["mqtt"]
    assert doc["ntp"] == ["a"] and "tz_offset_min" not in doc  # an older cloud: the template's


def test_network_checks_directly():
    assert netcfg.check_network("s", "", "w") == []
    assert netcfg.check_network("s", "G" * 64, "w")[0].startswith("w: the key (64 characters)")
    assert netcfg.check_wifi_list([{"ssid": str(i), "key": ""} for i in range(9)], "w") == [
        "w: at most 8 networks, not 9"
    ]


def test_broker_login_options_are_checked_offline(tmp_path, no_cloud, board, fake_build, capsys):
    pw = tmp_path / "pw"
    pw.write_text("tech-pw\n")
    argv = ["--config", str(ETH_BOARD), "--cloud", "https://c.example", "--claim", TOKEN,
            "--device", "gate-1", "--dry-run"]  # fmt: skip
    assert _flash(fake_build, *argv, "--broker-user", "qadam-tech") == EXIT_CONFIG
    assert "--broker-user and --broker-password-file go together" in capsys.readouterr().err
    rc = _flash(fake_build, *argv, "--broker-user", "t", "--broker-password-file", str(pw))
    assert rc == EXIT_CONFIG and "only used with --wait-online" in capsys.readouterr().err
    pw.write_text("a\nb\n")
    rc = _flash(fake_build, *argv, "--wait-online", "--broker-user", "t",
                "--broker-password-file", str(pw))  # fmt: skip
    assert rc == EXIT_CONFIG and "expected the password on one line" in capsys.readouterr().err
    pw.write_text("tech-pw\n")
    rc = _flash(fake_build, *argv, "--wait-online", "--broker-user", "t",
                "--broker-password-file", str(pw))  # fmt: skip
    assert rc == 0 and "tech-pw" not in "".join(capsys.readouterr())
