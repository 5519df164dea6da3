"""Issue #17 part 3's must-show, end to end: a guardian allows the QR code and the PIN and sets
the PIN in the parents' app (its Entry page); the whitelist worker brings the flags to a
turnstile board in the MicroPython VM; with the broker unreachable the board opens for the code
the app shows (read by the scanner driver from its UART) and for the pupil number + PIN typed on
the keypad, refuses the same code again, and the card works; back online, the guardian withdraws
the QR consent in the app: the next whitelist update reaches the board (the time is measured and
printed) and the next code is refused there with "no_consent", while the card still opens. The
ingest stores every event with the pupil resolved through the person key; nothing is
quarantined."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from cloud.altid import keys
from cloud.api.app import create_app
from cloud.auth.passwords import hash_password
from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.ingest.service import Ingest
from cloud.settings import Settings
from cloud.workers.whitelist_push import WhitelistPush
from simulator.board import BoardConfig, VirtualBoard

SITE_KEY = b"e2e-altid-site-key-0123456789abc"
CARD = bytes.fromhex("04a1a2a3")
PASSWORD = "a guardian's long password"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "https://testserver"}


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there afterwards: every connect is refused
    return port


def _seed(url: str, device: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        registry.create_school(conn, "ae", "Alt-id school", SITE_KEY)
        registry.register_device(conn, device, "ae", "Main gate", "turnstile", "in")
        aida = registry.add_person(conn, "ae", "student", "Aida Keyless")
        registry.add_card(conn, aida, card_key(SITE_KEY, CARD))
        row = conn.execute(
            "INSERT INTO users (email, password_hash, role) VALUES ('mum@ae.test', %s,"
            " 'guardian') RETURNING id",
            (hash_password(PASSWORD),),
        ).fetchone()
        assert row is not None
        conn.execute("INSERT INTO guardian_students VALUES (%s, %s)", (row[0], aida))
    return {"aida": aida, "mum": int(row[0])}


def _app_code(web: TestClient, person: int) -> str:
    page = web.get(f"/app/en/entry?child={person}")
    m = re.search(r'data-code="([^"]+)"', page.text)
    assert page.status_code == 200 and m, page.text
    return m.group(1)


def _qr_consent(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id FROM consents WHERE method = 'qr' AND withdrawn_at IS NULL"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _compiled(url: str) -> int:
    """The school's newest compiled version once nothing is waiting to be compiled, else 0."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT max(version) FROM whitelists WHERE school_id = 'ae'),"
            " EXISTS (SELECT 1 FROM whitelist_dirty)"
        ).fetchone()
    return 0 if row is None or row[1] or row[0] is None else int(row[0])


def _restart(board: VirtualBoard, port: int) -> None:
    board.stop()
    board.config.mqtt_port = port
    (board.flash / "device.json").write_text(json.dumps(board.config.device_json()))
    board.start()


def _send(board: VirtualBoard, line: str) -> dict[str, Any]:
    before = len(board.taps)
    board._send(line)
    board.wait_for(lambda: len(board.taps) > before, 10, f"to decide {line!r}")
    return board.taps[before]


def _qr(board: VirtualBoard, person: int) -> dict[str, Any]:
    return _send(board, "qr " + keys.qr_text(SITE_KEY, person)[0])


def test_consent_qr_offline_withdrawal_refused_card_still_works(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int], tmp_path: Path
) -> None:
    device = "alt-" + topic_prefix[-8:]
    ids = _seed(database_url, device)
    aida = ids["aida"]
    settings = Settings(
        database_url=database_url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
        topic_prefix=topic_prefix, ingest_client_id=f"ingest-{topic_prefix}",
        ingest_flush_ms=20, whitelist_poll_ms=100, auth_required=True,
    )  # fmt: skip
    with psycopg.connect(database_url) as conn:
        wl = registry.compile_whitelist(conn, "ae", 1)
    cfg = BoardConfig(device=device, school="ae", site_key=SITE_KEY, mqtt_host=mqtt_addr[0],
                      mqtt_port=mqtt_addr[1], prefix=topic_prefix,
                      extra={"altid": True})  # fmt: skip
    board = VirtualBoard(cfg, tmp_path / device)
    board.write_flash(wl)
    services = [Ingest(settings), WhitelistPush(settings)]
    with TestClient(create_app(settings), base_url="https://testserver") as web:
        for s in services:
            s.start()
        try:
            assert all(s.wait_ready(10) for s in services)
            board.start()
            board.wait_for(lambda: board.mqtt_up, 10, "to connect")
            board.wait_for(lambda: board.stat()["wl"] >= 1, 20, "its whitelist")
            # before any consent the code is refused: the pupil is not even listed as a person
            assert _qr(board, aida)["reason"] == "unknown_card"

            # the guardian, in the app: both methods allowed, the PIN set
            r = web.post("/app/en/login", data={"email": "mum@ae.test", "password": PASSWORD},
                         headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
            assert r.status_code == 303, r.text
            for method in ("qr", "pin"):
                r = web.post("/app/en/entry/consent", data={"child": aida, "method": method},
                             headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
                assert r.status_code == 303 and f"saved={method}" in r.headers["location"]
            r = web.post("/app/en/entry/pin", data={"child": aida, "pin": "4321", "again": "4321"},
                         headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
            assert r.status_code == 303 and "saved=pinset" in r.headers["location"]
            board.wait_for(lambda: _compiled(database_url) and board.stat()["wl"] ==
                           _compiled(database_url), 20, "the consented whitelist")  # fmt: skip

            # offline: the broker is unreachable; the board decides alone
            _restart(board, _closed_port())
            assert not board.mqtt_up
            code = _app_code(web, aida)  # what the phone shows
            tap = _send(board, "qr " + code)
            assert (tap["result"], tap["reason"], tap.get("method")) == ("granted", "ok", "qr")
            assert tap["card"] == keys.person_key(SITE_KEY, aida).hex()
            tap = _send(board, "qr " + code)  # the same code again (a photo of the screen)
            assert (tap["result"], tap["reason"]) == ("denied", "replayed")
            tap = _send(board, f"keys {aida}#0000#")
            assert (tap["result"], tap["reason"], tap["method"]) == ("denied", "wrong_pin", "pin")
            tap = _send(board, f"keys {aida}#4321#")
            assert (tap["result"], tap["reason"], tap["method"]) == ("granted", "ok", "pin")
            tap = board.tap(CARD)
            assert tap is not None and (tap["result"], tap.get("method")) == ("granted", None)

            # online again; the guardian withdraws the QR consent
            _restart(board, mqtt_addr[1])
            board.wait_for(lambda: board.mqtt_up, 10, "to connect")
            wl_before = board.stat()["wl"]
            t0 = time.monotonic()
            r = web.post(f"/app/en/consents/{_qr_consent(database_url)}/withdraw",
                         data={"child": aida}, headers=SAME_ORIGIN,
                         follow_redirects=False)  # fmt: skip
            assert r.status_code == 303, r.text
            board.wait_for(lambda: board.stat()["wl"] > wl_before, 20, "the withdrawal")
            reached = time.monotonic() - t0
            assert web.get(f"/app/en/entry/code?child={aida}").status_code == 404  # app: gone
            tap = _qr(board, aida)  # a code made as before (a screenshot of a fresh one)
            refused = time.monotonic() - t0
            assert (tap["result"], tap["reason"], tap["method"]) == ("denied", "no_consent", "qr")
            print(f"\nwithdrawal -> new whitelist on the board {reached * 1000:.0f} ms,"
                  f" -> QR refused {refused * 1000:.0f} ms")  # fmt: skip
            board._last_key = None
            time.sleep(1.6)  # past the card's debounce (the same card as before)
            tap = board.tap(CARD)
            assert tap is not None and tap["result"] == "granted"
            tap = _send(board, f"keys {aida}#4321#")  # the PIN consent is still live
            assert tap["result"] == "granted"
            board.wait_drained(30)

            with psycopg.connect(database_url) as conn:
                rows = conn.execute(
                    "SELECT person_id, result, reason FROM events ORDER BY boot, seq"
                ).fetchall()
                quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()
            assert quarantined == (0,)
            # the first code came before any consent: no person key yet, so no person
            assert [p for p, _, _ in rows] == [None] + [aida] * 8, rows
            assert [x[2] for x in rows] == [
                "unknown_card", "ok", "replayed", "wrong_pin", "ok", "ok",
                "no_consent", "ok", "ok",
            ], rows  # fmt: skip
        except Exception:
            print("\n".join(x for x in board.output if not x.startswith(("@stat", "@sup"))))
            raise
        finally:
            board.stop()
            for s in reversed(services):
                s.stop()
