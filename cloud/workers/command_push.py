"""Remote commands and the canteen menu push (issue #14 item 5, protocol.md "Commands", D27-A).

- **Status.** Subscribes to ``{prefix}/v1/dev/+/status`` and keeps which boards are online. An
  online status sends the board its queued commands (after a reconnect also the repeatable ones
  it never answered), and a canteen board's status queues its current menu (today and the next
  ``menu_days_ahead`` school-local days) when it differs from the newest one it was sent, so a
  board offline when the menu changed, or across midnight, gets it when it comes back.
- **Poll.** Every ``command_poll_ms``: commands queued by the API (or a menu write) go out to
  online boards, unanswered repeatable ones after ``command_resend_s``, overdue ones expire.
- **Replies.** ``{prefix}/v1/dev/+/cmd/res`` is matched by id to a command of that board only
  (:func:`cloud.commands.queue.record_reply`) and stored with its state.

Commands are published QoS 1, never retained, on the board's own ``.../cmd`` topic (the broker
account needs publish on ``{prefix}/v1/dev/+/cmd`` and subscribe on ``.../status`` and
``.../cmd/res``: docs/ingest.md).

Run: ``python -m cloud.workers.command_push`` (settings from ``QADAM_*``), or in-process with
``CommandPush(settings).start()`` / ``.stop()``.
"""

from __future__ import annotations

import logging
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from cloud.commands import menu, queue
from cloud.domain.board_status import status_doc
from cloud.settings import Settings
from cloud.workers.board_worker import BoardWorker

log = logging.getLogger("qadam.commands")



@dataclass(frozen=True, slots=True)
class _Msg:
    device: str
    leaf: str  # "status" or "cmd/res"
    payload: bytes


def parse_online(payload: bytes) -> bool | None:
    """A v1 status's ``online`` (the last will says false), or None if it is not one."""
    doc = status_doc(payload)
    return None if doc is None else bool(doc["online"])


class CommandPush(BoardWorker):
    name = "commands"
    leaves = ("status", "cmd/res")

    def __init__(self, settings: Settings) -> None:
        cid = settings.command_client_id or f"qadam-cmd-{uuid.uuid4().hex[:10]}"
        super().__init__(settings, cid, settings.command_poll_ms)
        self._online: set[str] = set()
        self.stats.update(sent=0, replies=0, expired=0, menus=0)

    def accept(self, device: str, leaf: str, msg: mqtt.MQTTMessage) -> _Msg:
        return _Msg(device, leaf, bytes(msg.payload))

    def poll(self, conn: psycopg.Connection[Any]) -> None:
        expired = queue.expire(conn)
        if expired:
            self.stats["expired"] += expired
            log.info("commands expired n=%d", expired)
        self._send(conn, queue.due(conn, sorted(self._online), self.settings.command_resend_s))

    def handle(self, conn: psycopg.Connection[Any], msg: _Msg) -> None:
        if msg.leaf == "cmd/res":
            doc = queue.parse_reply(msg.payload)
            if doc is not None and queue.record_reply(conn, msg.device, doc):
                self.stats["replies"] += 1
                log.info("command answered device=%s id=%s ok=%s error=%s", msg.device,
                         doc["id"], doc["ok"], doc.get("error"))  # fmt: skip
            return
        online = parse_online(msg.payload)
        if online is None:
            return
        if not online:
            self._online.discard(msg.device)
            return
        row = conn.execute(
            "SELECT school_id, mode FROM devices WHERE id = %s", (msg.device,)
        ).fetchone()
        if row is None:
            return  # not a registered device (D4)
        reconnected = msg.device not in self._online
        self._online.add(msg.device)
        if row[1] == "canteen":
            cid = menu.ensure_menu(conn, msg.device, str(row[0]), self.settings.menu_days_ahead)
            if cid is not None:
                self.stats["menus"] += 1
                log.info("menu queued device=%s command=%d", msg.device, cid)
        due = queue.due(conn, [msg.device], self.settings.command_resend_s,
                        reconnected=reconnected)  # fmt: skip
        self._send(conn, due)

    def _send(self, conn: psycopg.Connection[Any], rows: list[Any]) -> None:
        for cid, device, cmd, args in rows:
            # marked first: a reply can come back before a mark made after the publish
            queue.mark_sent(conn, cid)
            self.publish(device, "cmd", queue.wire(cid, cmd, args))
            self.stats["sent"] += 1
            log.info("command sent device=%s id=%d cmd=%s", device, cid, cmd)


def main(argv: list[str] | None = None) -> int:
    from cloud.startup import start_worker

    return start_worker(
        "cloud.workers.command_push", lambda s: CommandPush(s).run_forever(), argv, broker=True
    )


if __name__ == "__main__":
    sys.exit(main())
