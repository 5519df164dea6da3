"""deploy/install.sh as far as it runs on our machines (issue #18, D28-L): a --root install
writes the configuration; the test then runs what it wrote — Mosquitto with its TLS listener
and dynamic security, `qadam broker-accounts` making the services' accounts, nginx terminating
TLS in front of the API — and checks the systemd units name real `qadam` commands. Left out
here (no systemd as PID 1, no second PostgreSQL): packages, the system user, the database, and
starting the units."""

from __future__ import annotations

import configparser
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion

from cloud.api.app import create_app
from cloud.provisioning.service_accounts import PROCESS_ACCOUNT, SERVICES
from cloud.settings import Settings
from cloud.supervisor import PROCESSES
from tools.cli import WORKERS, build_parser

REPO = Path(__file__).resolve().parents[2]
SERVER = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, f"{what} exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"{what} never listened on {port}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    r = subprocess.run(
        ["sh", str(REPO / "deploy/install.sh"), "--server-name", SERVER, "--root", str(root),
         "--skip", "packages,user,code,database,start"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING: the web uses the machine's own CA" in r.stdout  # no --tls-cert given
    return root


def _env(root: Path) -> dict[str, str]:
    out = {}
    for line in (root / "etc/qadam/qadam.env").read_text().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    for args, says in ((["--root", str(tmp_path)], "--server-name is required"),
                       (["--server-name", "a b"], "host name"),
                       (["--server-name", "x.kz", "--tls-cert", "/nope", "--tls-key", "/nope"],
                        "readable"),
                       (["--server-name", "x.kz", "--bogus"], "unknown argument")):  # fmt: skip
        r = subprocess.run(["sh", str(REPO / "deploy/install.sh"), *args, "--root", str(tmp_path)],
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 2 and says in r.stderr, (args, r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_the_configuration_loads_and_the_certificates_chain(installed: Path) -> None:
    env = _env(installed)
    assert env["QADAM_DEVICE_CA_FILE"] == str(installed / "etc/qadam/board-ca.crt")
    assert "CHANGE-ME" not in env["QADAM_MQTT_ADMIN_PASSWORD"]
    s = Settings(**{k.removeprefix("QADAM_").lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    assert s.device_mqtt_tls and s.mqtt_dynsec and s.auth_required
    ca = x509.load_pem_x509_certificate((installed / "etc/qadam/board-ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate(
        (installed / "etc/mosquitto/certs/server.crt").read_bytes())  # fmt: skip
    assert server.issuer == ca.subject
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [SERVER]
    for secret in ("etc/qadam/board-ca.key", "etc/mosquitto/certs/server.key",
                   "etc/qadam/mqtt-admin-password"):  # fmt: skip
        assert (installed / secret).stat().st_mode & 0o077 == 0, secret


@pytest.fixture(scope="module")
def broker(installed: Path) -> Iterator[tuple[int, int]]:
    """The Mosquitto configuration install.sh wrote, on free ports."""
    plain, tls = _free_port(), _free_port()
    conf = (installed / "etc/mosquitto/conf.d/qadam.conf").read_text()
    conf = conf.replace("listener 1883 127.0.0.1", f"listener {plain} 127.0.0.1")
    conf = conf.replace("\nlistener 8883\n", f"\nlistener {tls} 127.0.0.1\n")
    conf = conf.replace("log_dest syslog", f"log_dest file {installed}/mosquitto.log")
    path = installed / "mosquitto-test.conf"
    path.write_text(conf + "\nuser root\n")
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_port(plain, proc, "mosquitto")
        _wait_port(tls, proc, "mosquitto (TLS)")
        yield plain, tls
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _connect(port: int, user: str, password: str, ca: Path | None = None) -> int:
    """The CONNACK code (0 = accepted); -1 for a TLS handshake refused."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"t-{user}",
                    protocol=mqtt.MQTTv311)  # fmt: skip
    c.username_pw_set(user, password)
    if ca is not None:
        c.tls_set(ca_certs=str(ca))
    got: list[int] = []
    done = threading.Event()
    c.on_connect = lambda _c, _u, _f, rc, _p: (got.append(int(rc.value)), done.set())
    try:
        c.connect("127.0.0.1", port, keepalive=10)
    except (ssl.SSLError, OSError):
        return -1
    c.loop_start()
    try:
        done.wait(10)
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0] if got else -1


def test_service_accounts_on_the_installed_broker(installed: Path, broker: tuple[int, int]) -> None:
    plain, tls = broker
    env = {**os.environ, **_env(installed), "QADAM_MQTT_PORT": str(plain)}
    out = installed / "etc/qadam"
    r = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "tools.cli", "broker-accounts",
                        "--out-dir", str(out)], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    for process, account in PROCESS_ACCOUNT.items():
        creds = dict(line.split("=", 1) for line in
                     (out / f"broker-{process}.env").read_text().splitlines())  # fmt: skip
        assert creds["QADAM_MQTT_USER"] == account
        assert (out / f"broker-{process}.env").stat().st_mode & 0o077 == 0
        assert _connect(plain, account, creds["QADAM_MQTT_PASSWORD"]) == 0, process
        assert _connect(plain, account, "wrong password") != 0
    assert set(PROCESS_ACCOUNT.values()) == set(SERVICES)
    # boards' listener: TLS verified with the board CA install.sh made; anonymous refused
    ca = installed / "etc/qadam/board-ca.crt"
    creds = dict(line.split("=", 1) for line in
                 (out / "broker-ingest.env").read_text().splitlines())  # fmt: skip
    assert _connect(tls, "qadam-ingest", creds["QADAM_MQTT_PASSWORD"], ca) == 0
    assert _connect(tls, "", "", ca) != 0
    other_ca = installed / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=other", "-keyout", str(installed / "other.key"),
                    "-out", str(other_ca)], check=True, capture_output=True)  # fmt: skip
    assert _connect(tls, "qadam-ingest", creds["QADAM_MQTT_PASSWORD"], other_ca) == -1


def test_nginx_terminates_tls_in_front_of_the_api(installed: Path, database_url: str) -> None:
    api_port, https, http = _free_port(), _free_port(), _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(database_url=database_url)),
            host="127.0.0.1",
            port=api_port,
            log_level="warning",
        )
    )
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    site = (installed / "etc/nginx/sites-enabled/qadam.conf").read_text()
    site = site.replace("127.0.0.1:8000", f"127.0.0.1:{api_port}")
    site = re.sub(r"listen 80;", f"listen 127.0.0.1:{http};", site)
    site = re.sub(r"listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;", site)
    site = re.sub(r"\n\s*listen \[::\]:\d+[^\n]*", "", site)
    conf = installed / "nginx-test.conf"
    conf.write_text(
        f"daemon off;\nuser root;\npid {installed}/nginx.pid;\nerror_log {installed}/nginx.err;\n"
        f"events {{}}\nhttp {{\naccess_log off;\nclient_body_temp_path {installed}/nb;\n"
        f"proxy_temp_path {installed}/np;\n{site}\n}}\n"
    )
    check = subprocess.run(["nginx", "-t", "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        _wait_port(https, proc, "nginx")
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ca = str(installed / "etc/qadam/board-ca.crt")
        r = httpx.get(f"https://127.0.0.1:{https}/healthz", verify=ca, timeout=10)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        login = httpx.get(f"https://127.0.0.1:{https}/login", verify=ca, timeout=10)
        assert login.status_code == 200 and "<form" in login.text
        plain = httpx.get(f"http://127.0.0.1:{http}/login?next=/today", timeout=10)
        assert plain.status_code == 308
        assert plain.headers["location"] == "https://127.0.0.1/login?next=/today"
        with pytest.raises(httpx.ConnectError):  # an unknown CA is refused
            httpx.get(f"https://127.0.0.1:{https}/healthz", verify=True, timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.should_exit = True
        t.join(timeout=10)


def _unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def test_the_units_run_real_qadam_commands(installed: Path) -> None:
    units = installed / "etc/systemd/system"
    parser = build_parser()
    api = _unit(units / "qadam-api.service")["Service"]["ExecStart"].split()
    ingest = _unit(units / "qadam-ingest.service")["Service"]["ExecStart"].split()
    assert api[0] == ingest[0] == "/opt/qadam/.venv/bin/qadam"
    parser.parse_args(api[1:])
    parser.parse_args(ingest[1:])
    worker = _unit(units / "qadam-worker@.service")["Service"]["ExecStart"].split()
    for name in WORKERS:  # every instance the target starts is a real worker
        parser.parse_args([a.replace("%i", name) for a in worker[1:]])
    wants = " ".join(line.split("=", 1)[1] for line in
                     (units / "qadam.target").read_text().splitlines()
                     if line.startswith("Wants="))  # fmt: skip
    started = {w.removesuffix(".service") for w in wants.split()}
    expected = {"qadam-api", "qadam-ingest"} | {f"qadam-worker@{n}" for n in WORKERS}
    assert started == expected
    assert {p.removeprefix("worker.") for p in PROCESSES if p.startswith("worker.")} == set(WORKERS)
