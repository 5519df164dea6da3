"""The files `qadam flash --cloud ... --wifi` writes from a TLS cloud's answer boot a virtual board
(the unchanged firmware in the MicroPython VM) that joins its Wi-Fi (hal.simnet), connects to
the broker's TLS listener verifying the cloud's CA, and says online; `--wait-online`'s watch sees
that over TLS with the same CA, and refuses a broker its CA did not sign (tests/tls_broker.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.board import BoardConfig, VirtualBoard
from tests.tls_broker import make_pki, tls_mosquitto
from tools.flashing import EXIT_BROKER, FlashError, provision
from tools.flashing.online import StatusWatch, status_topic

DEVICE, PREFIX = "gate-tls", "qt"
SSID, KEY = "school", "school-passphrase"
HEAP = "96K"  # a door with Wi-Fi and TLS (bench/power_on.py, D27-C)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _answer(pki: Path, port: int) -> bytes:
    return json.dumps({
        "device": DEVICE, "school": "s1", "site_key": (b"k" * 32).hex(),
        "mqtt": {"host": "127.0.0.1", "port": port, "prefix": PREFIX, "user": "board.gate-tls",
                 "password": "pw-not-checked-here", "acl": False, "tls": True,
                 "ca_pem": (pki / "ca.pem").read_text(), "server_hostname": "127.0.0.1"},
        "ntp": ["127.0.0.1:9"], "timezone": "Asia/Almaty", "tz_offset_min": 300, "mode": "door",
    }).encode()  # fmt: skip


def test_the_written_files_bring_a_board_online_over_tls(pki: Path, tmp_path: Path) -> None:
    with tls_mosquitto(pki) as (tls_port, _plain):
        p = provision._parse(DEVICE, _answer(pki, tls_port))
        files = provision.device_files(None, p, [{"ssid": SSID, "key": KEY}])
        assert sorted(files) == ["ca.pem", "device.json"]
        flash = tmp_path / "flash"
        flash.mkdir()
        for name, data in files.items():
            (flash / name).write_bytes(data)
        (flash / "board.json").write_text(
            json.dumps({"hal": "sim", "sim_net": {"aps": {SSID: [KEY, -60]}}})
        )
        watch = StatusWatch("127.0.0.1", tls_port, status_topic(PREFIX, DEVICE),
                            ca_pem=p.ca_pem, server_hostname=p.server_hostname)  # fmt: skip
        cfg = BoardConfig(device=DEVICE, school="s1", site_key=b"k" * 32, prefix=PREFIX)
        board = VirtualBoard(cfg, flash, heap=HEAP)
        try:
            watch.arm()
            board.start()
            status = watch.wait(30)
            assert status["online"] is True
            assert status["net"] == {"if": "wlan", "ssid": SSID, "ip": "10.9.0.23", "rssi": -60}
        finally:
            board.stop()
            watch.close()
        log = (pki / "mosquitto-good.log").read_text()
        assert f"as {DEVICE} " in log and f"u'board.{DEVICE}'" in log


def test_the_watch_refuses_a_broker_the_ca_did_not_sign(pki: Path) -> None:
    with tls_mosquitto(pki) as (tls_port, _plain):
        with pytest.raises(FlashError) as e:
            StatusWatch("127.0.0.1", tls_port, status_topic(PREFIX, DEVICE),
                        ca_pem=(pki / "other_ca.pem").read_text())  # fmt: skip
    assert e.value.code == EXIT_BROKER and "certificate verify failed" in str(e.value)


def test_the_watch_logs_in_on_a_broker_with_accounts(tmp_path: Path) -> None:
    """deploy/mosquitto refuses anonymous clients: --wait-online logs in with a technician's
    account that may read the boards' status (docs/flashing.md), over the boards' TLS port."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from cloud.provisioning.dynsec import DynSec
    from tests.dynsec_broker import ADMIN, ADMIN_PW
    from tests.tls_dynsec_broker import tls_dynsec_mosquitto

    d = tmp_path / "broker"
    topic = status_topic(PREFIX, DEVICE)
    with tls_dynsec_mosquitto(d) as (tls_port, plain_port):
        DynSec("127.0.0.1", plain_port, ADMIN, ADMIN_PW, PREFIX).run([
            {"command": "createRole", "rolename": "tech-status", "acls": [
                {"acltype": "subscribePattern", "topic": f"{PREFIX}/v1/dev/+/status",
                 "allow": True}]},
            {"command": "createRole", "rolename": "pub", "acls": [
                {"acltype": "publishClientSend", "topic": topic, "allow": True}]},
            {"command": "createClient", "username": "qadam-tech", "password": "tech-pw-0123",
             "roles": [{"rolename": "tech-status"}]},
            {"command": "createClient", "username": "pub", "password": "pub-pw-0123",
             "roles": [{"rolename": "pub"}]},
        ])  # fmt: skip
        ca = (d / "ca.pem").read_text()
        with pytest.raises(FlashError) as e:
            StatusWatch("127.0.0.1", tls_port, topic, ca_pem=ca)
        assert e.value.code == EXIT_BROKER and "refused the login" in str(e.value)
        assert "--broker-user USER --broker-password-file FILE" in str(e.value)
        with pytest.raises(FlashError) as e:  # an account that may not read the status
            StatusWatch("127.0.0.1", tls_port, topic, ca_pem=ca, user="pub", password="pub-pw-0123")
        assert "refused the subscription" in str(e.value)

        watch = StatusWatch("127.0.0.1", tls_port, topic, ca_pem=ca, user="qadam-tech",
                            password="tech-pw-0123")  # fmt: skip
        board = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="pub")
        board.username_pw_set("pub", "pub-pw-0123")
        board.connect("127.0.0.1", plain_port)
        board.loop_start()
        try:
            watch.arm()
            board.publish(topic, b'{"v":1,"online":true,"boot":3}', qos=1)
            assert watch.wait(10) == {"v": 1, "online": True, "boot": 3}
        finally:
            board.loop_stop()
            board.disconnect()
            watch.close()
