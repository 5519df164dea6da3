"""Issue #14 item 5, end to end: a menu planned in the cloud reaches the canteen boards and blocks
a restricted pupil's set at the counter. A guardian restricts nuts for her child through the API;
a school admin plans today's lunch (plov + a nut salad) and tomorrow's (plov alone) while one of
the two canteen boards is off (its plug pulled). The running board gets its menu at once, the
other when it comes back (its online status); each refuses the restricted pupil with reason
"allergen" and serves the others, reporting the set's main dish; every event, receipt and
command reply is stored. The unchanged firmware in the MicroPython VM, the real ingest, whitelist
worker and command pusher on the test broker, the real API."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from auth_tokens import session_headers
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.commands.menu import school_today
from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.ingest.service import Ingest
from cloud.provisioning.boardsetup import tz_offset_min
from cloud.settings import Settings
from cloud.workers.command_push import CommandPush
from cloud.workers.whitelist_push import WhitelistPush
from simulator.board import LARGE_HEAP, BoardConfig, VirtualBoard

SITE_KEY = b"e2e-menu-site-key-0123456789abcd"
NUTTY, PLAIN, OTHER = (bytes.fromhex(f"04bb{i:04x}") for i in range(3))


def _seed(url: str, boards: list[str]) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        registry.create_school(conn, "mn", "Menu school", SITE_KEY)
        for dev in boards:
            registry.register_device(conn, dev, "mn", "canteen", "canteen", "canteen")
        conn.execute(
            "INSERT INTO meal_categories (school_id, kind, name, price)"
            " VALUES ('mn', 'free', 'Free', 0)"
        )
        ids = {}
        for name, uid in (("nutty", NUTTY), ("plain", PLAIN), ("other", OTHER)):
            ids[name] = registry.add_person(conn, "mn", "student", name, meal_category=1)
            registry.add_card(conn, ids[name], card_key(SITE_KEY, uid))
        row = conn.execute(
            "INSERT INTO users (email, password_hash, role, school_id) VALUES"
            " ('admin@mn.test', 'x', 'school_admin', 'mn') RETURNING id"
        ).fetchone()
        assert row is not None
        ids["admin"] = row[0]
        row = conn.execute(
            "INSERT INTO users (email, password_hash, role) VALUES"
            " ('mum@mn.test', 'x', 'guardian') RETURNING id"
        ).fetchone()
        assert row is not None
        ids["guardian"] = row[0]
        conn.execute(
            "INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)",
            (ids["guardian"], ids["nutty"]),
        )
    return ids


def _cmd_replies(board: VirtualBoard) -> list[dict[str, Any]]:
    out = [x.split(" ", 1)[1] for x in board.output if x.startswith("@cmd ")]
    return [json.loads(json.loads(x)["res"]) for x in out]


def _menu_commands(url: str, device: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, state, attempts, args FROM device_commands WHERE device_id = %s"
            " AND purpose = 'menu' ORDER BY id",
            (device,),
        ).fetchall()


def _tap(board: VirtualBoard, uid: bytes) -> dict[str, Any]:
    tap = board.tap(uid)
    assert tap is not None, board.output[-20:]
    return tap


def _command(api: TestClient, headers: dict[str, str], device: str,
             body: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """POST a command, then wait for the board's reply to be stored; the final row."""
    r = api.post(f"/api/v1/devices/{device}/commands", headers=headers, json=body)
    assert r.status_code == 202, r.text
    cid = r.json()["id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = api.get(f"/api/v1/devices/{device}/commands", headers=headers).json()["items"]
        row = next(x for x in rows if x["id"] == cid)
        if row["state"] not in ("queued", "sent"):
            return row  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"no reply to {body} on {device}")


def test_a_planned_menu_blocks_at_both_counters(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int], tmp_path: Path
) -> None:
    on, off = "cta-" + topic_prefix[-8:], "ctb-" + topic_prefix[-8:]
    ids = _seed(database_url, [on, off])
    settings = Settings(
        database_url=database_url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
        topic_prefix=topic_prefix, ingest_client_id=f"ingest-{topic_prefix}",
        ingest_flush_ms=20, whitelist_poll_ms=100, command_poll_ms=100,
    )  # fmt: skip
    with TestClient(create_app(settings)) as api:
        admin = session_headers(database_url, ids["admin"])
        mum = session_headers(database_url, ids["guardian"])
        # the guardian's restriction, then the dishes: through the API
        r = api.put(f"/api/v1/people/{ids['nutty']}/restrictions", headers=mum,
                    json={"allergens": ["nuts"], "note": "allergy"})  # fmt: skip
        assert r.status_code == 200, r.text
        dishes = {}
        for name, price, allergens in (("Plov", "650", []), ("Nut salad", "300", ["nuts"])):
            r = api.post("/api/v1/dishes", headers=admin, json={
                "school_id": "mn", "name_kk": name, "name_ru": name, "name_en": name,
                "price": price, "allergens": allergens})  # fmt: skip
            assert r.status_code == 201, r.text
            dishes[name] = r.json()["id"]
        with psycopg.connect(database_url) as conn:
            wl = registry.compile_whitelist(conn, "mn", 1)
            today = school_today(conn, "mn")
        extra = {"mode": "canteen", "reader": "canteen",
                 "meal_periods": {"lunch": ["00:00", "24:00"]},
                 "tz_offset_min": tz_offset_min("Asia/Almaty")}  # fmt: skip
        boards = {}
        for dev in (on, off):
            cfg = BoardConfig(device=dev, school="mn", site_key=SITE_KEY, mqtt_host=mqtt_addr[0],
                              mqtt_port=mqtt_addr[1], prefix=topic_prefix, extra=extra)  # fmt: skip
            boards[dev] = VirtualBoard(cfg, tmp_path / dev, heap=LARGE_HEAP)
            boards[dev].write_flash(wl)
        services = [Ingest(settings), WhitelistPush(settings), CommandPush(settings)]
        for s in services:
            s.start()
        try:
            assert all(s.wait_ready(10) for s in services)
            for b in boards.values():
                b.start()
                b.wait_for(lambda b=b: b.mqtt_up, 10, "to connect")
            # no menu planned yet: no (empty) menu is sent to anyone
            assert _menu_commands(database_url, on) == []
            boards[off].power_cut()  # the broker publishes its last will: offline
            # today: plov + nut salad (the set has nuts); tomorrow: plov alone
            lunch = {"periods": {"lunch": [dishes["Plov"], dishes["Nut salad"]]}}
            r = api.put(f"/api/v1/schools/mn/menu/{today}", headers=admin, json=lunch)
            assert r.status_code == 200 and len(r.json()["pushed"]) == 2, r.text
            r = api.put(f"/api/v1/schools/mn/menu/{today + timedelta(days=1)}", headers=admin,
                        json={"periods": {"lunch": [dishes["Plov"]]}})  # fmt: skip
            assert r.status_code == 200, r.text

            b = boards[on]
            cid, _, _, args = _menu_commands(database_url, on)[-1]  # the newest: both days
            b.wait_for(lambda: any(x["id"] == cid for x in _cmd_replies(b)), 15, "the menu")
            assert [x for x in _cmd_replies(b) if x["id"] == cid][-1]["ok"] is True
            menu = args["set"]["menu"]["days"]
            assert sorted(menu) == [str(today), str(today + timedelta(days=1))]
            assert menu[str(today)]["lunch"][:2] == [dishes["Plov"], 1 << 7]  # nuts
            no = _tap(b, NUTTY)
            assert (no["result"], no["reason"]) == ("denied", "allergen"), no
            # diagnostics and a door opened once, through the API, answered and stored
            diag = _command(api, admin, on, {"cmd": "diag"})
            assert diag["state"] == "ok" and diag["reply"]["diag"]["menu"] == sorted(menu)
            assert diag["reply"]["diag"]["status"]["wl"] >= 1
            opened = _command(api, admin, on, {"cmd": "open"})
            assert (opened["state"], opened["attempts"]) == ("ok", 1)
            yes = _tap(b, PLAIN)
            assert (yes["result"], yes["reason"]) == ("granted", "free"), yes

            # the board that was off comes back: its status brings the menu queued for it
            o = boards[off]
            # queued; or "sent" into the void if the pusher had not yet seen the last will: sent
            # again when the board is back
            cid, state, _, _ = _menu_commands(database_url, off)[-1]
            assert state in ("queued", "sent")
            o.start()
            o.wait_for(lambda: any(x["id"] == cid for x in _cmd_replies(o)), 20, "the menu")
            no = _tap(o, NUTTY)
            assert (no["result"], no["reason"]) == ("denied", "allergen"), no
            yes = _tap(o, OTHER)
            assert (yes["result"], yes["reason"]) == ("granted", "free"), yes

            for bd in boards.values():
                bd.wait_drained(30)
            with psycopg.connect(database_url) as conn:
                cmds = conn.execute(
                    "SELECT device_id, state FROM device_commands WHERE purpose = 'menu'"
                    " ORDER BY id"
                ).fetchall()
                events = conn.execute(
                    "SELECT device_id, person_id, result, reason FROM events"
                    " ORDER BY device_id, seq"
                ).fetchall()
                receipts = conn.execute(
                    "SELECT device_id, person_id, dish_id FROM meal_receipts"
                    " ORDER BY device_id, seq"
                ).fetchall()
            # two writes to today..tomorrow: per board the newer one supersedes the older (the
            # running board may have answered the first before the second came)
            for dev in (on, off):
                states = [s for d, s in cmds if d == dev]
                assert states[-1] == "ok" and set(states[:-1]) <= {"ok", "superseded"}, cmds
            assert events == [
                (on, ids["nutty"], "denied", "allergen"),
                (on, ids["plain"], "granted", "free"),
                (off, ids["nutty"], "denied", "allergen"),
                (off, ids["other"], "granted", "free"),
            ]
            assert receipts == [
                (on, ids["plain"], dishes["Plov"]),
                (off, ids["other"], dishes["Plov"]),
            ]
        finally:
            for bd in boards.values():
                bd.stop()
            for s in reversed(services):
                s.stop()
