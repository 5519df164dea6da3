"""Whitelist distribution: keeps every board on its school's newest whitelist.

- **Status consumer.** Subscribes to ``{prefix}/v1/dev/+/status`` and stores each board's last
  status (wl version, online, last_seen) in ``device_status``; a status with a synced ``clock``
  reference corrects that boot's unsynced events (:mod:`cloud.ingest.clock`, protocol.md "Clock").
- **Compiler.** Every ``whitelist_poll_ms`` it reads ``whitelist_dirty`` (set by triggers on cards
  and people in the transaction that changed them) and compiles those schools; a changed list is
  stored as version N+1 (:func:`cloud.provisioning.whitelists.compile_school`).
- **Pusher.** A new version goes to every online board of the school; a status whose ``wl`` is not
  the newest gets an update; ``wl/req`` gets a snapshot. A delta when the board's version is still
  stored and the delta is smaller, else a snapshot; chunks QoS 1 to ``{prefix}/v1/dev/{dev}/wl``.

Run: ``python -m cloud.workers.whitelist_push`` (settings from ``QADAM_*``), or in-process with
``WhitelistPush(settings).start()`` / ``.stop()``.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from cloud.ingest.clock import apply_status_clock
from cloud.provisioning import whitelists as wls
from cloud.settings import Settings
from cloud.workers.board_worker import BoardWorker

log = logging.getLogger("qadam.whitelist")

RESEND_S = 15.0  # the same update is not re-sent to a board within this time (unless it asks)


@dataclass(frozen=True, slots=True)
class _Msg:
    device: str
    leaf: str  # "status" or "wl/req"
    payload: bytes
    retained: bool


class WhitelistPush(BoardWorker):
    name = "whitelist"
    leaves = ("status", "wl/req")

    def __init__(self, settings: Settings) -> None:
        cid = settings.whitelist_client_id or f"qadam-wl-{uuid.uuid4().hex[:10]}"
        super().__init__(settings, cid, settings.whitelist_poll_ms)
        self._sent: dict[str, tuple[int, int, float]] = {}  # device -> (version, kind, when)
        self.stats.update(status=0, compiled=0, pushes=0, chunks=0, bad_status=0,
                          clock_corrected=0)  # fmt: skip

    def accept(self, device: str, leaf: str, msg: mqtt.MQTTMessage) -> _Msg:
        return _Msg(device, leaf, bytes(msg.payload), bool(msg.retain))

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        wls.mark_all_dirty(conn)

    def poll(self, conn: psycopg.Connection[Any]) -> None:
        self._compile_dirty(conn)
        self.tell_reused_boots(conn)  # the ingest's identity_reused: protocol.md "Boot floor"

    def _compile_dirty(self, conn: psycopg.Connection[Any]) -> None:
        for school in wls.dirty_schools(conn):
            new = wls.compile_school(conn, school, self.settings.whitelist_keep)
            if new is None:
                continue
            self.stats["compiled"] += 1
            log.info(
                "whitelist compiled school=%s version=%d count=%d", school, new.version, new.count
            )
            for device in wls.school_devices(conn, school):
                self._push(conn, device, force_snapshot=False, asked=False)

    def handle(self, conn: psycopg.Connection[Any], msg: _Msg) -> None:
        if msg.leaf == "wl/req":
            self._push(conn, msg.device, force_snapshot=True, asked=True)
            return
        doc = wls.parse_status(msg.payload)
        if doc is None:
            if msg.payload:
                self.stats["bad_status"] += 1
                log.warning("status ignored device=%s: not a v1 status", msg.device)
            return
        if not wls.record_status(conn, msg.device, doc, msg.retained):
            return  # not a registered device (D4)
        self.stats["status"] += 1
        corrected = apply_status_clock(conn, msg.device, doc)  # protocol.md "Clock"
        if corrected:
            self.stats["clock_corrected"] += corrected
            log.info("clock correction device=%s boot=%s events=%d",
                     msg.device, doc.get("boot"), corrected)  # fmt: skip
        self.check_boot(conn, msg.device, doc)  # a reused boot counter: protocol.md "Boot floor"
        if doc["online"] and "wl" in doc:
            self._push(conn, msg.device, force_snapshot=False, asked=False)

    def _push(
        self, conn: psycopg.Connection[Any], device: str, *, force_snapshot: bool, asked: bool
    ) -> None:
        push, why = wls.plan_push(conn, device, force_snapshot=force_snapshot)
        if push is None:
            return
        prev = self._sent.get(device)
        now = time.monotonic()
        if (
            not asked and prev is not None and prev[:2] == (push.version, push.kind)
            and now - prev[2] < RESEND_S
        ):  # fmt: skip
            return
        self._sent[device] = (push.version, push.kind, now)
        for m in push.messages:
            self.publish(device, "wl", m)
        self.stats["pushes"] += 1
        self.stats["chunks"] += len(push.messages)
        log.info(
            "whitelist push device=%s version=%d kind=%s base=%d chunks=%d",
            device, push.version, why, push.base, len(push.messages),
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from cloud.startup import start_worker

    return start_worker(
        "cloud.workers.whitelist_push", lambda s: WhitelistPush(s).run_forever(), argv, broker=True
    )


if __name__ == "__main__":
    sys.exit(main())
