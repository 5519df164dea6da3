"""End to end: a card revoked through the API reaches a running virtual board (the unchanged
firmware in the MicroPython VM) within seconds: the whitelist worker compiles version 2, pushes a
delta, the board installs it and reports it in its status (the drift API shows it in sync), and
the revoked card is denied with ``unknown_card``; the ingest stores that tap."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from pathlib import Path
from typing import Any

import psycopg
from dynsec_broker import ADMIN, ADMIN_PW, dynsec_mosquitto
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.ingest.service import Ingest
from cloud.settings import Settings
from cloud.workers.whitelist_push import WhitelistPush
from simulator.board import BoardConfig, VirtualBoard

SITE_KEY = b"e2e-site-key-0123456789abcdef!!!"
UID_A, UID_B = bytes.fromhex("04a1b2c3"), bytes.fromhex("04d4e5f6")


def _seed(url: str, device: str) -> str:
    """School, device, two students with cards, a school admin with a session; -> bearer token."""
    token = secrets.token_urlsafe(32)
    with psycopg.connect(url) as conn:
        registry.create_school(conn, "e2e", "E2E school", SITE_KEY)
        registry.register_device(conn, device, "e2e", "gate", "turnstile", "sim")
        for name, uid in (("Aru", UID_A), ("Bek", UID_B)):
            pid = registry.add_person(conn, "e2e", "student", name)
            registry.add_card(conn, pid, card_key(SITE_KEY, uid))
        row = conn.execute(
            "INSERT INTO users (email, password_hash, role, school_id)"
            " VALUES ('admin@e2e.kz', 'unused', 'school_admin', 'e2e') RETURNING id"
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at)"
            " VALUES (%s, %s, now() + interval '1 hour')",
            (hashlib.sha256(token.encode()).digest(), row[0]),
        )
    return token


def _drift(client: TestClient, auth: dict[str, str], device: str) -> dict[str, Any]:
    r = client.get("/api/v1/devices/drift", headers=auth)
    assert r.status_code == 200, r.text
    (item,) = [i for i in r.json()["items"] if i["device_id"] == device]
    return item  # type: ignore[no-any-return]


def _until(pred: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, f"timed out waiting {timeout}s for {what}"
        time.sleep(0.1)
    return time.monotonic() - t0


def test_revoked_card_reaches_the_board_within_seconds(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int], tmp_path: Any
) -> None:
    device = "p-" + topic_prefix[-8:]  # the board's MQTT client id: unique on the shared broker
    token = _seed(database_url, device)
    auth = {"Authorization": f"Bearer {token}"}
    settings = Settings(
        database_url=database_url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
        topic_prefix=topic_prefix, ingest_client_id=f"ingest-{topic_prefix}",
        ingest_flush_ms=20, whitelist_poll_ms=100,
    )  # fmt: skip
    with psycopg.connect(database_url) as conn:
        v1 = registry.compile_whitelist(conn, "e2e", 1)
    board = VirtualBoard(
        BoardConfig(
            device=device,
            school="e2e",
            site_key=SITE_KEY,
            mqtt_host=mqtt_addr[0],
            mqtt_port=mqtt_addr[1],
            prefix=topic_prefix,
        ),  # fmt: skip
        tmp_path / "flash",
    )
    board.write_flash(v1)
    ingest, worker = Ingest(settings), WhitelistPush(settings)
    ingest.start()
    worker.start()
    try:
        assert ingest.wait_ready(10) and worker.wait_ready(10)
        board.start()
        with TestClient(create_app(settings)) as client:
            # the worker compiled the same list as v1: the board is in sync, nothing to push
            _until(lambda: _drift(client, auth, device)["in_sync"], 15, "v1 in sync")
            d = _drift(client, auth, device)
            assert (d["running"], d["latest"], d["online"]) == (1, 1, True)
            assert d["last_seen"] is not None
            tap = board.tap(UID_A)
            assert tap is not None and (tap["result"], tap["reason"]) == ("granted", "ok")

            key_a = card_key(SITE_KEY, UID_A)
            r = client.post(f"/api/v1/cards/{key_a}/revoke", json={"reason": "lost"}, headers=auth)
            assert r.status_code == 200, r.text
            took = _until(
                lambda: _drift(client, auth, device)["running"] == 2, 10, "the board to run v2"
            )
            assert took < 5, took
            d = _drift(client, auth, device)
            assert d["in_sync"] and d["latest"] == 2 and d["wl_err"] is None
            r = client.get("/api/v1/whitelists/e2e", headers=auth)
            assert r.json()["version"] == 2 and r.json()["count"] == 1
            assert worker.stats["pushes"] == 1  # one delta, no snapshot

        # another card first: the same card twice within the board's debounce would be ignored
        tap = board.tap(UID_B)
        assert tap is not None and (tap["result"], tap["reason"]) == ("granted", "ok")
        tap = board.tap(UID_A)
        assert tap is not None and (tap["result"], tap["reason"]) == ("denied", "unknown_card")
        board.wait_drained(20)
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT card_key, result, reason FROM events WHERE device_id = %s ORDER BY seq",
                (device,),
            ).fetchall()
        assert rows[-2:] == [(card_key(SITE_KEY, UID_B), "granted", "ok"),
                             (key_a, "denied", "unknown_card")]  # fmt: skip
    finally:
        board.stop()
        worker.stop()
        ingest.stop()


def _platform_admin(url: str) -> dict[str, str]:
    token = secrets.token_urlsafe(32)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO users (email, password_hash, role)"
            " VALUES ('root@e2e.kz', 'unused', 'platform_admin') RETURNING id"
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at)"
            " VALUES (%s, %s, now() + interval '1 hour')",
            (hashlib.sha256(token.encode()).digest(), row[0]),
        )
    return {"Authorization": f"Bearer {token}"}


def _log_count(log: Path, pattern: str) -> int:
    """Lines of the private broker's log matching ``pattern``. Mosquitto 2.0.11 logs a refused
    CONNECT as "Client <unknown> disconnected, not authorised." (no client id): in these tests
    only the board can be refused."""
    return len(re.findall(pattern, log.read_text() if log.exists() else ""))


REFUSED = r"disconnected, not authori[sz]ed"


def test_a_deleted_device_locks_its_running_board_out(database_url: str, tmp_path: Path) -> None:
    """Issue #13 items 1 and 2 with the unchanged firmware: a board provisioned through the API
    logs in to a broker with dynamic security as ``board.<device>`` (client id = device id);
    deleting its device (no events yet) disconnects it and every reconnect is refused; another
    school cannot take the id."""
    device, prefix = "door-e2e", "qe"
    (tmp_path / "broker").mkdir()
    with dynsec_mosquitto(tmp_path / "broker") as port:
        auth = {"Authorization": f"Bearer {_seed(database_url, device)}"}
        root = _platform_admin(database_url)
        with psycopg.connect(database_url) as conn:
            v1 = registry.compile_whitelist(conn, "e2e", 1)
            registry.create_school(conn, "e2e-2", "Another school", b"x" * 32)
        settings = Settings(
            database_url=database_url, auth_required=True, mqtt_port=port, topic_prefix=prefix,
            mqtt_dynsec=True, mqtt_admin_user=ADMIN, mqtt_admin_password=ADMIN_PW,
        )  # fmt: skip
        with TestClient(create_app(settings)) as client:
            r = client.post(f"/api/v1/devices/{device}/claim-token", headers=auth)
            assert r.status_code == 201, r.text
            r = client.post(
                "/api/v1/provision", json={"device": device, "token": r.json()["token"]}
            )
            assert r.status_code == 200, r.text
            m = r.json()["mqtt"]
            assert m["user"] == f"board.{device}" and m["acl"] is True
            board = VirtualBoard(
                BoardConfig(
                    device=device, school="e2e", site_key=SITE_KEY, mqtt_port=port,
                    prefix=prefix, extra={"mqtt": dict(m, keepalive=30)},
                ),
                tmp_path / "flash",
            )  # fmt: skip
            board.write_flash(v1)
            board.start()
            try:
                _until(lambda: board.stat()["mqtt"], 20, "the board to log in")
                log = tmp_path / "broker" / "mosquitto.log"
                assert _log_count(log, REFUSED) == 0

                assert client.delete(f"/api/v1/devices/{device}", headers=auth).status_code == 204
                _until(lambda: not board.stat()["mqtt"], 20, "the broker to drop the board")
                kicked = rf"Client {device} been disconnected by administrative action"
                assert _log_count(log, kicked) == 1
                # it keeps trying (backoff from 0.5 s) and is refused each time
                _until(lambda: _log_count(log, REFUSED) >= 2, 30, "two refused reconnects")
                tap = board.tap(UID_A)  # the tap is still decided locally (invariant 1)
                assert tap is not None and tap["result"] == "granted"
                body = {"id": device, "school_id": "e2e-2", "mode": "door"}
                r = client.post("/api/v1/devices", json=body, headers=root)
                assert r.status_code == 409, r.text
                assert not board.stat()["mqtt"]
            finally:
                board.stop()
