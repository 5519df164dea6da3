"""deploy/mosquitto/mosquitto.conf with the dynamic-security plugin: anonymous clients are
refused, a board may only publish on its own topics, the ingest reads them through a shared
subscription. Runs a private mosquitto on a free port (paths rewritten to a temp dir)."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    text = CONF.read_text()
    assert f"plugin {PLUGIN}" in text and Path(PLUGIN).exists()
    text = text.replace("/var/lib/mosquitto/", f"{tmp_path}/")
    text = text.replace("listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
    text = re.sub(r"(?ms)^listener 8883$.*?^tls_version .*?$", "", text)  # no certs here
    text = text.replace("log_dest syslog", f"log_dest file {tmp_path}/mosquitto.log")
    (tmp_path / "m.conf").write_text(text + "\nuser root\n")
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", f"{tmp_path}/dynamic-security.json",
                    "admin", "adminpw"], check=True, capture_output=True)  # fmt: skip
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(tmp_path / "m.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        ctrl = ["mosquitto_ctrl", "-h", "127.0.0.1", "-p", str(port), "-u", "admin", "-P",
                "adminpw", "dynsec"]  # fmt: skip
        for cmd in (
            # one role per board: Mosquitto 2.0.11's dynsec does not substitute %c in ACLs
            "createRole board-gate-1",
            "addRoleACL board-gate-1 publishClientSend qadam/v1/dev/gate-1/events allow",
            "addRoleACL board-gate-1 subscribePattern qadam/v1/dev/gate-1/ack allow",
            "createRole board-gate-2",
            "addRoleACL board-gate-2 publishClientSend qadam/v1/dev/gate-2/events allow",
            "addRoleACL board-gate-2 subscribePattern qadam/v1/dev/gate-2/ack allow",
            "createRole ingest",
            "addRoleACL ingest subscribePattern $share/+/qadam/v1/dev/+/events allow",
            "addRoleACL ingest publishClientSend qadam/v1/dev/+/ack allow",
            # board accounts are board.<device>, bound to the device id as client id (D24-A)
            "createClient board.gate-1 -c gate-1 -p pw1",
            "addClientRole board.gate-1 board-gate-1",
            "createClient board.gate-2 -c gate-2 -p pw2",
            "addClientRole board.gate-2 board-gate-2",
            "createClient qadam-ingest -p pwi",
            "addClientRole qadam-ingest ingest",
        ):
            subprocess.run(ctrl + cmd.split(), check=True, capture_output=True, timeout=10)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _client(
    port: int, cid: str, password: str | None, user: str | None = None
) -> tuple[mqtt.Client, int]:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid,
                    protocol=mqtt.MQTTv311)  # fmt: skip
    result: list[int] = []
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        result.append(int(rc.value))  # type: ignore[attr-defined]
        done.set()

    c.on_connect = on_connect
    if password is not None:
        c.username_pw_set(user or cid, password)
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    assert done.wait(5)
    return c, result[0]


def test_per_device_accounts_and_acls(broker: int) -> None:
    anon, rc = _client(broker, "anon", None)
    anon.loop_stop()
    assert rc != 0, "anonymous client accepted"
    wrong, rc = _client(broker, "gate-1", "nope", "board.gate-1")
    wrong.loop_stop()
    assert rc != 0, "wrong password accepted"

    ingest, rc = _client(broker, "qadam-ingest", "pwi")
    assert rc == 0
    got: list[str] = []
    subscribed = threading.Event()
    ingest.on_message = lambda _c, _u, m: got.append(m.topic)
    ingest.on_subscribe = lambda *a: subscribed.set()
    ingest.subscribe("$share/g/qadam/v1/dev/+/events", qos=1)
    assert subscribed.wait(5)

    bare, rc = _client(broker, "gate-1", "pw1")  # the device id alone is no account
    bare.loop_stop()
    assert rc != 0, "a board logged in without its board. prefix"
    gate1, rc = _client(broker, "gate-1", "pw1", "board.gate-1")
    assert rc == 0
    gate1.publish("qadam/v1/dev/gate-1/events", b"{}", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    assert got == ["qadam/v1/dev/gate-1/events"], got
    # gate-1 cannot pose as gate-2 (Mosquitto 2.0.11 drops the message and, for MQTT 3.1.1,
    # the connection)
    gate1.publish("qadam/v1/dev/gate-2/events", b"{}", qos=1)
    time.sleep(0.5)
    assert got == ["qadam/v1/dev/gate-1/events"], got
    for c in (ingest, gate1):
        c.disconnect()
        c.loop_stop()
