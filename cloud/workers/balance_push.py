"""Canteen balance distribution: keeps every canteen board on its school's current balances
(docs/protocol.md "Canteen balances", decision D15).

- **Dirty schools.** Every ``balance_poll_ms`` it claims the schools marked in ``balance_dirty``
  (triggers on balances, cards and people, migration 0010) whose first mark is at least
  ``balance_debounce_ms`` old, so a burst of charges or top-ups becomes one push, and pushes to
  each of their online canteen boards.
- **Status.** A canteen board reports the push version it runs (``bal``) in its status; one that
  differs from the school's current version gets the current balances (at most once per
  ``RESEND_S`` per version, unless the version changed).
- **Push.** One snapshot per school (balances by card + each board's watermark), chunked to
  ``{prefix}/v1/dev/{device}/bal``, QoS 1, in order (:mod:`cloud.ledger.push`).

Run: ``python -m cloud.workers.balance_push`` (settings from ``QADAM_*``), or in-process with
``BalancePush(settings).start()`` / ``.stop()``.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from cloud.domain.board_status import status_doc
from cloud.ledger import push as bp
from cloud.settings import Settings
from cloud.workers.board_worker import BoardWorker

log = logging.getLogger("qadam.balances")

RESEND_S = 15.0


def parse_bal(payload: bytes) -> int | None:
    """The push version an online canteen board reports, or None (not one, offline, bad)."""
    doc = status_doc(payload)
    if doc is None or doc["online"] is not True:
        return None
    bal = doc.get("bal")
    if isinstance(bal, bool) or not isinstance(bal, int) or not 0 <= bal <= bp.U32:
        return None
    return bal


class BalancePush(BoardWorker):
    name = "balances"

    def __init__(self, settings: Settings) -> None:
        cid = settings.balance_client_id or f"qadam-bal-{uuid.uuid4().hex[:10]}"
        super().__init__(settings, cid, settings.balance_poll_ms)
        self._sent: dict[str, tuple[int, float]] = {}  # device -> (version, when)
        self.stats.update(claimed=0, pushes=0, chunks=0)

    def accept(self, device: str, leaf: str, msg: mqtt.MQTTMessage) -> tuple[str, int] | None:
        bal = parse_bal(bytes(msg.payload))
        return None if bal is None else (device, bal)  # None: not a canteen board, or offline

    def poll(self, conn: psycopg.Connection[Any]) -> None:
        for school in bp.claim_due(conn, self.settings.balance_debounce_ms):
            self.stats["claimed"] += 1
            self._push(conn, school, bp.canteen_devices(conn, school))

    def handle(self, conn: psycopg.Connection[Any], item: tuple[str, int]) -> None:
        self._on_status(conn, *item)

    def _on_status(self, conn: psycopg.Connection[Any], device: str, bal: int) -> None:
        school = bp.device_school(conn, device)
        if school is None:
            return  # not a registered device (D4)
        version = bp.current_version(conn, school)
        prev = self._sent.get(device)
        if bal == version or (
            prev is not None and prev[0] == version and time.monotonic() - prev[1] < RESEND_S
        ):
            return
        self._push(conn, school, [device])

    def _push(self, conn: psycopg.Connection[Any], school: str, devices: list[str]) -> None:
        if not devices:
            return
        snap = bp.snapshot(conn, school, devices)
        for device in devices:
            boot, seq = snap.marks[device]
            msgs = bp.chunks(snap, boot, seq)
            for m in msgs:
                self.publish(device, "bal", m)
            self._sent[device] = (snap.version, time.monotonic())
            self.stats["pushes"] += 1
            self.stats["chunks"] += len(msgs)
            log.info(
                "balance push device=%s school=%s version=%d cards=%d watermark=%d/%d chunks=%d",
                device, school, snap.version, snap.count, boot, seq, len(msgs),
            )  # fmt: skip
        conn.execute(
            "UPDATE balance_push_state SET cards = %s, pushed_at = now() WHERE school_id = %s",
            (snap.count, school),
        )


def main(argv: list[str] | None = None) -> int:
    from cloud.startup import start_worker

    return start_worker(
        "cloud.workers.balance_push", lambda s: BalancePush(s).run_forever(), argv, broker=True
    )


if __name__ == "__main__":
    sys.exit(main())
