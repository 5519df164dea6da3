"""Issue #6, end to end: flash a virtual board (simulator/pty_board.py), trade its claim token for
MQTT credentials at the real API (uvicorn in this process, a fresh database), boot, and see it
online on the real broker (Mosquitto, 127.0.0.1:1883) with the credentials the cloud issued. The
token works once: a second flash with it fails with exit 11 and writes nothing."""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from test_flash_e2e import firmware as snapshot_firmware
from test_flash_e2e import qadam_flash, retained_status

from cloud.api.app import create_app
from cloud.domain import registry
from cloud.settings import Settings
from simulator.pty_board import PtyBoard
from tools.flashing import EXIT_CLAIM_REFUSED, EXIT_CLOUD

firmware = snapshot_firmware  # the fixture: a snapshot of firmware/ per module

DEVICE = "gate-prov"
SITE_KEY = bytes(range(32))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cloud(database_url: str, topic_prefix: str, mqtt_addr) -> Iterator[dict]:
    """The API on a free port; a school, the device, and a technician with a bearer token."""
    token = secrets.token_urlsafe(32)
    with psycopg.connect(database_url) as conn:
        registry.create_school(conn, "s1", "School s1", SITE_KEY)
        registry.register_device(conn, DEVICE, "s1", "entrance", "turnstile", "mfrc522")
        row = conn.execute(
            "INSERT INTO users (email, password_hash, role, school_id)"
            " VALUES ('tech@qadam.kz', 'x', 'technician', 's1') RETURNING id"
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at)"
            " VALUES (%s, %s, now() + interval '1 hour')",
            (hashlib.sha256(token.encode()).digest(), row[0]),
        )
    settings = Settings(
        database_url=database_url,
        auth_required=True,
        topic_prefix=topic_prefix,
        mqtt_dynsec=False,
        device_mqtt_host=mqtt_addr[0],
        device_mqtt_port=mqtt_addr[1],
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        yield {"url": url, "auth": {"Authorization": f"Bearer {token}"}, "db": database_url}
    finally:
        server.should_exit = True
        t.join(10)


@pytest.fixture
def board(tmp_path) -> Iterator[PtyBoard]:
    b = PtyBoard(tmp_path / "flash")
    b.start()
    b.wait_output(">>> ", 10)  # an empty flash: the board sits at the REPL
    yield b
    b.stop()


def _claim_token(cloud: dict) -> str:
    r = httpx.post(f"{cloud['url']}/api/v1/devices/{DEVICE}/claim-token", headers=cloud["auth"])
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def _snapshot(flash: Path) -> dict[str, str]:
    return {
        p.relative_to(flash).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in flash.rglob("*")
        if p.is_file()
    }


def test_flash_provision_boot_online_and_the_token_works_once(
    board,
    cloud,
    firmware,
    tmp_path,
    topic_prefix,
    mqtt_addr,
):
    board_json = tmp_path / "cfg" / "board.json"
    board_json.parent.mkdir()
    board_json.write_text(json.dumps({"hal": "sim"}))
    template = tmp_path / "cfg" / "device.json"  # what the cloud does not know
    template.write_text(json.dumps({"clock_synced": True, "mqtt": {"keepalive": 20}}))
    token = _claim_token(cloud)
    args = ["--firmware", str(firmware), "--config", str(board_json), "--config", str(template),
            "--cloud", cloud["url"], "--claim", token, "--device", DEVICE]  # fmt: skip

    r = qadam_flash(board.port, tmp_path, *args, "--wait-online", "--online-timeout", "30")
    assert r.returncode == 0, r.stdout + r.stderr

    doc = json.loads((board.flash / "device.json").read_text())
    m = doc["mqtt"]
    assert doc["device"] == DEVICE and doc["school"] == "s1" and doc["site_key"] == SITE_KEY.hex()
    assert doc["clock_synced"] is True  # the template's keys stay
    assert (m["host"], m["port"], m["prefix"]) == (*mqtt_addr, topic_prefix)
    assert m["user"] == "board." + DEVICE and len(m["password"]) >= 24 and m["keepalive"] == 20
    assert m["password"] not in r.stdout + r.stderr  # never printed
    assert not (board.flash / "claim.json").exists()  # the token is traded, not stored
    assert f"provisioned: device {DEVICE}, school s1" in r.stdout and "********" in r.stdout
    with psycopg.connect(cloud["db"]) as conn:
        row = conn.execute(
            "SELECT used_at IS NOT NULL FROM device_claim_tokens WHERE token_hash = %s",
            (hashlib.sha256(token.encode()).digest(),),
        ).fetchone()
        creds = conn.execute(
            "SELECT mqtt_username FROM device_credentials WHERE device_id = %s", (DEVICE,)
        ).fetchone()
    assert row == (True,) and creds == ("board." + DEVICE,)

    # the board booted with those credentials and the cloud's broker has it online
    topic = f"{topic_prefix}/v1/dev/{DEVICE}/status"
    assert f"waiting for {topic}" in r.stdout
    board.wait_output(f'"dev":"{DEVICE}"', 5)
    status = retained_status(mqtt_addr, topic)
    assert status["online"] is True and status["boot"] == 1

    # the same token again: refused by the cloud, nothing written, the board not reset
    before, runs = _snapshot(board.flash), board.firmware_runs
    r = qadam_flash(board.port, tmp_path, *args)
    assert r.returncode == EXIT_CLAIM_REFUSED == 11, r.stdout + r.stderr
    assert "HTTP 403" in r.stderr and "nothing was written to the board" in r.stderr
    assert "copying" not in r.stdout and "soft reset" not in r.stdout
    assert _snapshot(board.flash) == before and board.firmware_runs == runs


def test_cloud_unreachable_writes_nothing(board, firmware, tmp_path):
    board_json = tmp_path / "board.json"
    board_json.write_text(json.dumps({"hal": "sim"}))
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    r = qadam_flash(board.port, tmp_path, "--firmware", str(firmware), "--config",
                    str(board_json), "--cloud", url, "--claim", "x" * 43,
                    "--device", DEVICE)  # fmt: skip
    assert r.returncode == EXIT_CLOUD == 10, r.stdout + r.stderr
    assert f"error: --cloud: cannot reach {url}/api/v1/provision" in r.stderr
    assert list(board.flash.iterdir()) == []
