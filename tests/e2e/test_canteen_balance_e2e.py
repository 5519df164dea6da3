"""End to end, canteen balances (D15): a top-up through the API reaches a running simulated
canteen board (the unchanged firmware in the MicroPython VM) within seconds, a paid tap is
charged on the board from that balance, the ingest charges the same meal (with the dish the
board reported) and the next push leaves the board and the cloud ledger agreeing. Then a power
cut in the middle of a chunked push: the board comes back with the old balances file, and a
complete push installs the new one."""

from __future__ import annotations

import binascii
import hashlib
import json
import secrets
import struct
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from cloud.api.app import create_app
from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.ingest.service import Ingest
from cloud.ledger import push as bp
from cloud.settings import Settings
from cloud.workers.balance_push import BalancePush
from cloud.workers.whitelist_push import WhitelistPush
from simulator.board import LARGE_HEAP, BoardConfig, VirtualBoard

SITE_KEY = b"e2e-canteen-key-0123456789abcdef"
UID = bytes.fromhex("04c0ffee")


def _seed(url: str, device: str) -> tuple[str, int, int]:
    """School, canteen board, a paid-category pupil with a card, a dish, a school admin with a
    session; -> (bearer token, person id, dish id)."""
    token = secrets.token_urlsafe(32)
    with psycopg.connect(url) as conn:
        registry.create_school(conn, "cb", "Canteen school", SITE_KEY)
        registry.register_device(conn, device, "cb", "canteen", "canteen", "canteen")
        pid = registry.add_person(conn, "cb", "student", "Dana")
        conn.execute("UPDATE people SET meal_category = 3 WHERE id = %s", (pid,))
        registry.add_card(conn, pid, card_key(SITE_KEY, UID))
        conn.execute(
            "INSERT INTO meal_categories (school_id, kind, name, price)"
            " VALUES ('cb', 'paid', 'Paid', 650)"
        )
        dish = conn.execute(
            "INSERT INTO dishes (school_id, name_kk, name_ru, price)"
            " VALUES ('cb', 'Палау', 'Плов', 650) RETURNING id"
        ).fetchone()
        user = conn.execute(
            "INSERT INTO users (email, password_hash, role, school_id)"
            " VALUES ('admin@cb.kz', 'unused', 'school_admin', 'cb') RETURNING id"
        ).fetchone()
        assert dish is not None and user is not None
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at)"
            " VALUES (%s, %s, now() + interval '1 hour')",
            (hashlib.sha256(token.encode()).digest(), user[0]),
        )
    return token, pid, int(dish[0])


def _until(pred: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, f"timed out waiting {timeout}s for {what}"
        time.sleep(0.05)
    return time.monotonic() - t0


def _bal_lines(b: VirtualBoard) -> list[dict[str, Any]]:
    return [json.loads(x.split(" ", 1)[1]) for x in b.output if x.startswith("@bal ")]


def _bal_file(flash: Path) -> tuple[tuple[int, int, int, int], dict[bytes, int]]:
    """canteen.bal -> ((version, watermark boot, seq, floor), {card key: tiyn})."""
    data = (flash / "canteen.bal").read_bytes()
    assert data[:4] == b"QCB1"
    head = struct.unpack_from("<IIIi", data, 4)
    recs = {
        data[i : i + 8]: struct.unpack_from("<i", data, i + 8)[0] for i in range(20, len(data), 12)
    }
    return head, recs


def test_top_up_reaches_the_board_and_the_ledger_agrees(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int], tmp_path: Path
) -> None:
    device = "c-" + topic_prefix[-8:]
    token, pid, dish = _seed(database_url, device)
    auth = {"Authorization": f"Bearer {token}"}
    key = bytes.fromhex(card_key(SITE_KEY, UID))
    settings = Settings(
        database_url=database_url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
        topic_prefix=topic_prefix, ingest_client_id=f"ingest-{topic_prefix}",
        ingest_flush_ms=20, whitelist_poll_ms=100, balance_poll_ms=50, balance_debounce_ms=200,
    )  # fmt: skip
    with psycopg.connect(database_url) as conn:
        wl = registry.compile_whitelist(conn, "cb", 1)
    menu = {"periods": {"lunch": {"dish": "Plov", "id": dish, "allergens": 0, "price": "650"}}}
    extra = {"mode": "canteen", "reader": "canteen", "meal_periods": {"lunch": ["00:00", "24:00"]},
             "menu": menu, "offline_credit_limit": "0"}  # fmt: skip
    flash = tmp_path / "flash"
    board = VirtualBoard(
        BoardConfig(
            device=device,
            school="cb",
            site_key=SITE_KEY,
            mqtt_host=mqtt_addr[0],
            mqtt_port=mqtt_addr[1],
            prefix=topic_prefix,
            extra=extra,
        ),  # fmt: skip
        flash,
        heap=LARGE_HEAP,  # canteen boards do not fit the default 64 KB yet (D16)
    )
    board.write_flash(wl)
    services = [Ingest(settings), WhitelistPush(settings), BalancePush(settings)]
    for s in services:
        s.start()
    try:
        assert all(s.wait_ready(10) for s in services)
        board.start()
        # the board starts without balances (version 0): its status brings the current ones
        board.wait_for(lambda: bool(_bal_lines(board)), 15, "the first balance push")
        assert "installed" in _bal_lines(board)[-1], _bal_lines(board)
        assert _bal_file(flash)[1] == {key: 0}
        tap = board.tap(UID)
        assert tap is not None and (tap["result"], tap["reason"]) == ("denied", "no_balance")

        n = len(_bal_lines(board))
        with TestClient(create_app(settings)) as client:
            r = client.post(
                f"/api/v1/people/{pid}/balance/top-up",
                headers={**auth, "Idempotency-Key": "t-1"},
                json={"amount": "1000", "reason": "cash"},
            )
            assert r.status_code == 201, r.text
            _until(lambda: _bal_file(flash)[1] == {key: 100000}, 10, "the new balance")
            time.sleep(1.6)  # the board ignores the same card within 1.5 s (debounce)
            tap = board.tap(UID)
            assert tap is not None, board.output[-20:]
            assert (tap["result"], tap["reason"], tap["balance"]) == ("granted", "paid", "350")
            board.wait_drained(20)
            # the ingest charged the meal (the dish's price) in the same transaction
            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "SELECT dish_id, price, family_pays FROM meal_receipts WHERE device_id = %s",
                    (device,),
                ).fetchone()
            assert row == (dish, Decimal("650.00"), Decimal("650.00"))
            r = client.get(f"/api/v1/people/{pid}/balance", headers=auth)
            assert r.json()["balance"] == "350.00", r.text
            # the charge marked the school: a push whose watermark covers the tap
            _until(lambda: _bal_file(flash)[0][2] >= tap["seq"], 10, "the push after the charge")
            head, recs = _bal_file(flash)
            assert recs == {key: 35000} and head[1:3] == (tap["boot"], tap["seq"])
            assert not (flash / "canteen.crd").exists()  # nothing of the board's own is pending
            assert len(_bal_lines(board)) > n
            r = client.get("/api/v1/devices/drift?school=cb", headers=auth)
            d = r.json()["items"][0]
            assert d["bal_latest"] >= 1 and d["bal_err"] is None

        # A power cut while a 3-chunk push arrives: the old file stays, the part is dropped.
        services[2].stop()  # our own pushes from here on, none of the worker's in between
        old = (flash / "canteen.bal").read_bytes()
        head, _ = _bal_file(flash)
        keys = sorted([key, b"\x00" * 8, b"\xff" * 8])
        body = b"".join(k + struct.pack("<i", 77700) for k in keys)
        snap = bp.Snapshot("cb", head[0] + 100, 0, body, binascii.crc32(body), {})
        msgs = bp.chunks(snap, head[1], head[2], per=1)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        pub.connect(*mqtt_addr)
        pub.loop_start()
        t = f"{topic_prefix}/v1/dev/{device}/bal"
        for m in msgs[:2]:
            pub.publish(t, m, 1).wait_for_publish()
        part = flash / "canteen.bpt"
        _until(lambda: part.exists() and part.stat().st_size == 24, 10, "two chunks on flash")
        board.power_cut()
        assert (flash / "canteen.bal").read_bytes() == old
        board.start()
        assert not part.exists() and (flash / "canteen.bal").read_bytes() == old
        board.wait_for(lambda: board.mqtt_up, 10, "to connect")  # subscribed again
        # the whole push this time: the new file, in one piece
        for m in msgs:
            pub.publish(t, m, 1).wait_for_publish()
        _until(lambda: _bal_file(flash)[0][0] == head[0] + 100, 10, "the complete push")
        assert _bal_file(flash)[1] == dict.fromkeys(keys, 77700)
        pub.loop_stop()
        pub.disconnect()
    finally:
        board.stop()
        for s in reversed(services):
            s.stop()
