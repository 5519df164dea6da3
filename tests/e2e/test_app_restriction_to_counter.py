"""Issue #16's must-show, end to end: a guardian of two pupils signs in to the parents' app,
sees today's milk porridge on the menu and sets a milk restriction for one child with the app's
own form; the canteen board in the MicroPython VM then refuses that child the milk porridge
with reason "allergen" (the restriction is in force at once, D28-G: the whitelist worker
carries the new mask to the board) and serves the other, whose porridge the guardian then
rates; a rating of the refused child's porridge is refused (not served). The unchanged firmware, the
real ingest, whitelist worker and command pusher on the test broker, the real API and app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from auth_tokens import session_headers
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.auth.passwords import hash_password
from cloud.commands.menu import school_today
from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.ingest.service import Ingest
from cloud.provisioning.boardsetup import tz_offset_min
from cloud.settings import Settings
from cloud.workers.command_push import CommandPush
from cloud.workers.whitelist_push import WhitelistPush
from simulator.board import LARGE_HEAP, BoardConfig, VirtualBoard

SITE_KEY = b"e2e-milk-site-key-0123456789abcd"
MILKY, PLAIN = (bytes.fromhex(f"04cc{i:04x}") for i in range(2))
PASSWORD = "milk porridge 2026"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "https://testserver"}


def _seed(url: str, device: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        registry.create_school(conn, "ar", "Milk school", SITE_KEY)
        registry.register_device(conn, device, "ar", "canteen", "canteen", "canteen")
        conn.execute(
            "INSERT INTO meal_categories (school_id, kind, name, price)"
            " VALUES ('ar', 'free', 'Free', 0)"
        )
        ids: dict[str, Any] = {}
        for name, uid in (("Dana Milkova", MILKY), ("Erlan Plain", PLAIN)):
            ids[name] = registry.add_person(conn, "ar", "student", name, meal_category=1)
            registry.add_card(conn, ids[name], card_key(SITE_KEY, uid))
        for key, email, role, school in (("admin", "admin@ar.test", "school_admin", "ar"),
                                         ("mum", "mum@ar.test", "guardian", None)):  # fmt: skip
            row = conn.execute(
                "INSERT INTO users (email, password_hash, role, school_id) VALUES"
                " (%s, %s, %s, %s) RETURNING id",
                (email, hash_password(PASSWORD), role, school),
            ).fetchone()
            assert row is not None
            ids[key] = row[0]
        for child in ("Dana Milkova", "Erlan Plain"):
            conn.execute(
                "INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)",
                (ids["mum"], ids[child]),
            )
    return ids


def _tap(board: VirtualBoard, uid: bytes) -> tuple[str, str]:
    tap = board.tap(uid)
    assert tap is not None, board.output[-20:]
    return tap["result"], tap["reason"]


def test_a_milk_restriction_set_in_the_app_blocks_the_milk_porridge(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int], tmp_path: Path
) -> None:
    device = "cmk-" + topic_prefix[-8:]
    ids = _seed(database_url, device)
    dana, erlan = ids["Dana Milkova"], ids["Erlan Plain"]
    settings = Settings(
        database_url=database_url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
        topic_prefix=topic_prefix, ingest_client_id=f"ingest-{topic_prefix}",
        ingest_flush_ms=20, whitelist_poll_ms=100, command_poll_ms=100, auth_required=True,
    )  # fmt: skip
    with TestClient(create_app(settings), base_url="https://testserver") as web:
        admin = session_headers(database_url, ids["admin"])
        r = web.post("/api/v1/dishes", headers=admin, json={
            "school_id": "ar", "name_kk": "Сүт ботқасы", "name_ru": "Молочная каша",
            "name_en": "Milk porridge", "price": "250", "allergens": ["milk"]})  # fmt: skip
        assert r.status_code == 201, r.text
        porridge = r.json()["id"]
        with psycopg.connect(database_url) as conn:
            wl = registry.compile_whitelist(conn, "ar", 1)
            today = school_today(conn, "ar")
        extra = {"mode": "canteen", "reader": "canteen",
                 "meal_periods": {"lunch": ["00:00", "24:00"]},
                 "tz_offset_min": tz_offset_min("Asia/Almaty")}  # fmt: skip
        cfg = BoardConfig(device=device, school="ar", site_key=SITE_KEY, mqtt_host=mqtt_addr[0],
                          mqtt_port=mqtt_addr[1], prefix=topic_prefix, extra=extra)  # fmt: skip
        board = VirtualBoard(cfg, tmp_path / device, heap=LARGE_HEAP)
        board.write_flash(wl)
        services = [Ingest(settings), WhitelistPush(settings), CommandPush(settings)]
        for s in services:
            s.start()
        try:
            assert all(s.wait_ready(10) for s in services)
            board.start()
            board.wait_for(lambda: board.mqtt_up, 10, "to connect")
            r = web.put(f"/api/v1/schools/ar/menu/{today}", headers=admin,
                        json={"periods": {"lunch": [porridge]}})  # fmt: skip
            assert r.status_code == 200 and r.json()["pushed"], r.text
            board.wait_for(lambda: any(x.startswith("@cmd ") for x in board.output), 15,
                           "the menu")  # fmt: skip
            # the guardian signs in to the app, in English: the porridge is not blocked yet
            r = web.post("/app/en/login", data={"email": "mum@ar.test", "password": PASSWORD},
                         headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
            assert r.status_code == 303 and r.headers["location"] == "/app/en/", r.text
            menu = web.get(f"/app/en/menu?child={dana}")
            assert menu.status_code == 200 and "Milk porridge" in menu.text
            assert 'class="dish blocked"' not in menu.text

            # the milk restriction, through the app's form: in force at once
            board.wait_for(lambda: board.stat()["wl"] >= 1, 20, "its whitelist")
            wl_before = board.stat()["wl"]
            r = web.post("/app/en/restrictions", data={"child": dana, "allergen": ["milk"]},
                         headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
            assert r.status_code == 303, r.text
            page = web.get(f"/app/en/restrictions?child={dana}").text
            assert "refuses meals with: milk" in page
            menu = web.get(f"/app/en/menu?child={dana}")
            assert 'class="dish blocked"' in menu.text and "Blocked" in menu.text

            # the whitelist worker brings the board the new list: the porridge is refused
            board.wait_for(lambda: board.stat()["wl"] > wl_before, 20, "the new whitelist")
            assert _tap(board, MILKY) == ("denied", "allergen")
            assert _tap(board, PLAIN) == ("granted", "free")
            board.wait_drained(30)

            # Erlan's porridge was served, so it can be rated; Dana's was not: refused
            menu = web.get(f"/app/en/menu?child={erlan}")
            assert f"dish={porridge}&amp;day={today}" in menu.text
            r = web.post("/app/en/rate", data={"child": erlan, "dish": porridge,
                         "day": str(today), "score": "5", "comment": "he liked it"},
                         headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
            assert r.status_code == 303, r.text
            r = web.post("/app/en/rate", data={"child": dana, "dish": porridge,
                         "day": str(today), "score": "1"}, headers=SAME_ORIGIN)  # fmt: skip
            assert r.status_code == 422 and "was not served to your child" in r.text
            with psycopg.connect(database_url) as conn:
                events = conn.execute(
                    "SELECT person_id, result, reason FROM events ORDER BY seq"
                ).fetchall()
                receipts = conn.execute(
                    "SELECT person_id, dish_id FROM meal_receipts ORDER BY seq"
                ).fetchall()
                rated = conn.execute(
                    "SELECT person_id, dish_id, served_on, score FROM meal_ratings"
                ).fetchall()
            assert events == [(dana, "denied", "allergen"), (erlan, "granted", "free")]
            assert receipts == [(erlan, porridge)]
            assert rated == [(erlan, porridge, today, 5)]
        finally:
            board.stop()
            for s in reversed(services):
                s.stop()
