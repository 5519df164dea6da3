"""tools.services: the embedded PostgreSQL and MQTT broker, started as real processes on free
ports (never 5432/1883, which the machine's own servers use)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tools.services import (
    EmbeddedBroker,
    EmbeddedPostgres,
    ensure_services,
    mqtt_ping,
    port_open,
)

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def wait_until(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A plain TCP listener standing in for 'a server already runs on this port'."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, 0))
    s.listen(16)
    yield s
    s.close()


class Client:
    """paho-mqtt 2.2, MQTT 3.1.1, as the cloud ingest uses it."""

    def __init__(self, port: int, client_id: str, *, clean_session: bool = True,
                 manual_ack: bool = False, will: tuple[str, bytes] | None = None) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=clean_session,
                             manual_ack=manual_ack)
        if will:
            self.c.will_set(will[0], will[1], qos=1, retain=False)
        self.messages: list[mqtt.MQTTMessage] = []
        self.session_present: bool | None = None
        connected = threading.Event()

        def on_connect(client, userdata, flags, reason_code, properties=None):
            self.session_present = flags.session_present
            connected.set()

        self.c.on_connect = on_connect
        self.c.on_message = lambda client, userdata, msg: self.messages.append(msg)
        self.c.connect(HOST, port, keepalive=10)
        self.c.loop_start()
        assert connected.wait(5), "no CONNACK"

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, qos=1)
        assert done.wait(5), "no SUBACK"

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self) -> None:
        """Vanish without DISCONNECT (as a board losing power)."""
        self.c.loop_stop()
        self.c._sock_close()


def test_embedded_broker_carries_what_the_ingest_uses(tmp_path: Path) -> None:
    port = free_port()
    broker = EmbeddedBroker(port, log_file=tmp_path / "amqtt.log").start()
    pid = broker.pid
    assert pid is not None and mqtt_ping(HOST, port)
    t = f"test/{uuid.uuid4().hex[:8]}"
    try:
        pub = Client(port, "pub")
        # QoS 1 to a persistent, manually acking subscriber
        sub = Client(port, "ingest", clean_session=False, manual_ack=True)
        sub.subscribe(f"{t}/ev/+")
        pub.publish(f"{t}/ev/1", b"tap-1")
        assert wait_until(lambda: sub.payloads() == [b"tap-1"])
        m = sub.messages[0]
        assert m.qos == 1
        sub.c.ack(m.mid, m.qos)

        # persistent session: what is published while the subscriber is away is kept
        sub.close()
        time.sleep(1.2)  # amqtt's session monitor runs every second
        pub.publish(f"{t}/ev/2", b"tap-2")
        sub = Client(port, "ingest", clean_session=False, manual_ack=True)
        assert sub.session_present is True
        assert wait_until(lambda: sub.payloads() == [b"tap-2"])
        sub.c.ack(sub.messages[0].mid, 1)

        # retained messages
        pub.publish(f"{t}/cfg", b"v7", retain=True)
        late = Client(port, "late")
        late.subscribe(f"{t}/cfg")
        assert wait_until(lambda: late.payloads() == [b"v7"])
        assert late.messages[0].retain

        # last will on an abrupt disconnect
        watcher = Client(port, "watcher")
        watcher.subscribe(f"{t}/status")
        board = Client(port, "board", will=(f"{t}/status", b"offline"))
        board.drop()
        assert wait_until(lambda: watcher.payloads() == [b"offline"], timeout=5)

        for c in (pub, sub, late, watcher):
            c.close()
    finally:
        broker.stop()
    assert not port_open(HOST, port)
    assert gone(pid)


def test_embedded_postgres_start_use_stop_restart(shared_tmp: Path) -> None:
    tmp_path = shared_tmp
    port = free_port()
    pg = EmbeddedPostgres(tmp_path / "pg", port=port, dbname="qadam")
    t0 = time.monotonic()
    pg.start()
    first_start = time.monotonic() - t0
    pid = pg.pid
    assert pid is not None
    try:
        with psycopg.connect(pg.url("qadam"), autocommit=True) as conn:
            assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("18")
            conn.execute("CREATE TABLE taps (id int PRIMARY KEY, uid text)")
            conn.execute("INSERT INTO taps VALUES (1, '04a1b2')")
    finally:
        pg.stop()
    assert not port_open(HOST, port)
    assert gone(pid)

    # a second start reuses the data directory (no initdb) and keeps the data
    pg2 = EmbeddedPostgres(tmp_path / "pg", port=port, dbname="qadam").start()
    try:
        with psycopg.connect(pg2.url("qadam")) as conn:
            assert conn.execute("SELECT uid FROM taps").fetchall() == [("04a1b2",)]
    finally:
        pg2.stop()
    assert not port_open(HOST, port)
    print(f"first embedded PostgreSQL start (initdb + start): {first_start:.2f}s")


def test_ensure_services_uses_what_runs_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as pg_sock, socket.socket() as mq_sock:
        for s in (pg_sock, mq_sock):
            s.bind((HOST, 0))
            s.listen(8)
        pg_port, mq_port = pg_sock.getsockname()[1], mq_sock.getsockname()[1]
        services = ensure_services(tmp_path, pg_port=pg_port, mqtt_port=mq_port)
        assert services.started == []
        assert services.postgres is None and services.broker is None
        assert services.pg_admin_url == f"postgresql://postgres@{HOST}:{pg_port}/postgres"
        assert (services.mqtt_host, services.mqtt_port) == (HOST, mq_port)
        services.stop()
        assert port_open(HOST, pg_port) and port_open(HOST, mq_port)
        assert not (tmp_path / "pg").exists()


def test_ensure_services_stops_only_what_it_started(tmp_path: Path, listener: socket.socket,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    pg_port = listener.getsockname()[1]  # "a PostgreSQL" already runs
    mq_port = free_port()
    services = ensure_services(tmp_path, pg_port=pg_port, mqtt_port=mq_port)
    out = capsys.readouterr().out
    assert f"PostgreSQL: using the running server on {HOST}:{pg_port}" in out
    assert "MQTT: starting embedded broker" in out
    assert services.started == ["mqtt"]
    assert mqtt_ping(HOST, mq_port)
    pid = services.broker.pid
    services.stop()
    services.stop()  # idempotent
    assert not port_open(HOST, mq_port) and gone(pid)
    assert port_open(HOST, pg_port)


# Starts the command that follows with SIGINT ignored, as a background job (`cmd &`) of a
# non-interactive shell starts: exec keeps an ignored signal ignored, and the pid.
SIGINT_IGNORED = ["-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                  "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"]


def _run_up(tmp_path: Path, pg_port: int, mq_port: int,
            sigint_ignored: bool = False) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, *(SIGINT_IGNORED if sigint_ignored else []), "-m", "tools.services",
         "up", "--state-dir", str(tmp_path), "--pg-port", str(pg_port), "--mqtt-port",
         str(mq_port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C to stop" in line:
            break
    text = "".join(lines)
    m = re.search(r"MQTT: ready in .*\(pid (\d+)", text)
    assert m, text
    return proc, int(m.group(1))


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["sigint-default", "sigint-ignored"])
def test_ctrl_c_stops_what_was_started(tmp_path: Path, listener: socket.socket,
                                       sigint_ignored: bool) -> None:
    """Also when started with SIGINT ignored (a background job of a script, or a test run
    started that way): Python then raises no KeyboardInterrupt by itself."""
    mq_port = free_port()
    proc, broker_pid = _run_up(tmp_path, listener.getsockname()[1], mq_port, sigint_ignored)
    assert mqtt_ping(HOST, mq_port)
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM stops it and its broker (test_sigterm_stops_what_was_started)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"still running 20 s after SIGINT; its output:\n{out}")
    assert proc.returncode == 0, out
    assert "MQTT: stopping embedded broker" in out
    assert gone(broker_pid) and not port_open(HOST, mq_port)
    assert port_open(HOST, listener.getsockname()[1])


def test_sigterm_stops_what_was_started(tmp_path: Path, listener: socket.socket) -> None:
    mq_port = free_port()
    proc, broker_pid = _run_up(tmp_path, listener.getsockname()[1], mq_port)
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert "MQTT: stopping embedded broker" in out
    assert gone(broker_pid) and not port_open(HOST, mq_port)


def test_broker_exits_when_its_parent_is_killed(tmp_path: Path, listener: socket.socket) -> None:
    mq_port = free_port()
    proc, broker_pid = _run_up(tmp_path, listener.getsockname()[1], mq_port)
    proc.kill()  # no cleanup runs in the parent: the broker notices by itself
    assert gone(broker_pid, timeout=10)
    proc.wait(timeout=5)
    assert not port_open(HOST, mq_port)
