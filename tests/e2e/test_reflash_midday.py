"""Issue #13 item 7, end to end: a canteen board is re-flashed in the middle of the day (its flash
erased: no boot counter, no journal) with the same device file, so it starts again at boot 1 and
would reuse the identities (device, boot, seq) of the morning's meals. Every tap, meal receipt
and Social Wallet delivery is counted afterwards: the morning's are all intact, the taps made
before the board learnt its boot floor are in quarantine with their reason (visible, never a
silent drop), and every tap after the floor command is stored with a new identity, receipt and
delivery. The unchanged firmware in the MicroPython VM, the real ingest and the real whitelist
worker (which tells the board its floor once the ingest quarantined a reused identity) on the
test broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.ingest.service import Ingest
from cloud.settings import Settings
from cloud.workers.whitelist_push import WhitelistPush
from simulator.board import LARGE_HEAP, BoardConfig, VirtualBoard

SITE_KEY = b"e2e-reflash-key-0123456789abcdef"
PUPILS = 12
UIDS = [bytes.fromhex(f"04aa{i:04x}") for i in range(PUPILS)]


def _seed(url: str, device: str) -> None:
    """A school, its canteen board, a free-meal category and twelve pupils on it, each with a
    card (so every tap is a granted meal: a receipt and a Social Wallet delivery)."""
    with psycopg.connect(url) as conn:
        registry.create_school(conn, "rf", "Reflash school", SITE_KEY)
        registry.register_device(conn, device, "rf", "canteen", "canteen", "canteen")
        conn.execute(
            "INSERT INTO meal_categories (school_id, kind, name, price)"
            " VALUES ('rf', 'free', 'Free', 0)"
        )
        for i, uid in enumerate(UIDS):
            pid = registry.add_person(conn, "rf", "student", f"Pupil {i}")
            conn.execute("UPDATE people SET meal_category = 1 WHERE id = %s", (pid,))
            registry.add_card(conn, pid, card_key(SITE_KEY, uid))


def _counts(url: str, device: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:

        def one(q: str) -> Any:
            row = conn.execute(q, (device,)).fetchone()
            assert row is not None
            return row[0]

        quarantined = conn.execute(
            "SELECT reason, payload FROM quarantine WHERE device_id = %s", (device,)
        ).fetchall()
        return {
            "events": conn.execute(
                "SELECT boot, seq, card_key FROM events WHERE device_id = %s ORDER BY boot, seq",
                (device,),
            ).fetchall(),
            "receipts": one("SELECT count(*) FROM meal_receipts WHERE device_id = %s"),
            "deliveries": one(
                "SELECT count(*) FROM outbox WHERE kind = 'social_wallet'"
                " AND idempotency_key LIKE 'meal:' || %s || ':%%'"
            ),
            "quarantined": [(r, json.loads(bytes(p))) for r, p in quarantined],
        }


def _tap_all(board: VirtualBoard, uids: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for uid in uids:
        tap = board.tap(uid)
        assert tap is not None and tap["result"] == "granted", (tap, board.output[-10:])
        out.append(tap)
    return out


def test_a_board_reflashed_mid_day_loses_and_hides_nothing(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int], tmp_path: Path
) -> None:
    device = "rf-" + topic_prefix[-8:]
    _seed(database_url, device)
    settings = Settings(
        database_url=database_url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
        topic_prefix=topic_prefix, ingest_client_id=f"ingest-{topic_prefix}",
        ingest_flush_ms=20, whitelist_poll_ms=100,
    )  # fmt: skip
    with psycopg.connect(database_url) as conn:
        wl = registry.compile_whitelist(conn, "rf", 1)
    extra = {"mode": "canteen", "reader": "canteen",
             "meal_periods": {"lunch": ["00:00", "24:00"]}}  # fmt: skip
    config = BoardConfig(device=device, school="rf", site_key=SITE_KEY, mqtt_host=mqtt_addr[0],
                         mqtt_port=mqtt_addr[1], prefix=topic_prefix, extra=extra)  # fmt: skip
    services = [Ingest(settings), WhitelistPush(settings)]
    for s in services:
        s.start()
    morning = VirtualBoard(config, tmp_path / "flash-morning", heap=LARGE_HEAP)
    morning.write_flash(wl)
    try:
        assert all(s.wait_ready(10) for s in services)
        morning.start()
        # Right after start: the re-flashed board's first status cannot give the reused boot
        # away (its uptime is as long as the morning's), so the ingest's identity check finds
        # it, and the whitelist worker tells the board its floor.
        first = _tap_all(morning, UIDS[:5])
        morning.wait_drained(30)
    finally:
        morning.stop()
    boot = first[0]["boot"]
    before = _counts(database_url, device)
    assert [(b, s) for b, s, _ in before["events"]] == [(boot, n) for n in range(1, 6)]
    assert before["receipts"] == before["deliveries"] == 5 and before["quarantined"] == []

    # erase-flash, then the same device file again: no boot.cnt, no journal, boot 1 again
    noon = VirtualBoard(config, tmp_path / "flash-noon", heap=LARGE_HEAP)
    noon.write_flash(wl)
    try:
        noon.start()
        early = _tap_all(noon, UIDS[5:8])  # before it learnt anything: the morning's identities
        assert [(t["boot"], t["seq"]) for t in early] == [(boot, 1), (boot, 2), (boot, 3)]
        noon.wait_for(lambda: any(x.startswith("@boot ") for x in noon.output), 30,
                      "the boot floor command")  # fmt: skip
        moved = [json.loads(x.split(" ", 1)[1]) for x in noon.output if x.startswith("@boot ")]
        assert moved[-1]["boot"] > boot, moved
        late = _tap_all(noon, UIDS[8:])
        assert all(t["boot"] == moved[-1]["boot"] for t in late), late
        noon.wait_drained(30)
    finally:
        noon.stop()
        for s in reversed(services):
            s.stop()

    after = _counts(database_url, device)
    # the morning is intact: its events (same cards), receipts and deliveries
    assert after["events"][:5] == before["events"]
    # every tap is accounted for: 5 in the morning, 3 quarantined as reused identities, 4 new
    reused = [
        (ev["boot"], ev["seq"])
        for reason, doc in after["quarantined"]
        if reason == "identity_reused"
        for ev in doc["events"]
    ]
    assert sorted(reused) == [(boot, 1), (boot, 2), (boot, 3)], after["quarantined"]
    new = after["events"][5:]
    assert [(b, s) for b, s, _ in new] == [(moved[-1]["boot"], n) for n in range(1, 5)]
    assert [k for _, _, k in new] == [card_key(SITE_KEY, u) for u in UIDS[8:]]
    assert len(after["events"]) + len(reused) == PUPILS  # every tap: stored or quarantined
    assert after["receipts"] == after["deliveries"] == 5 + 4
