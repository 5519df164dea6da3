"""The OTA worker (docs/ota.md, protocol.md "OTA"): drives rollouts and serves release images.

- **Status.** ``{prefix}/v1/dev/+/status``: each board's firmware (fw, slot, trial, rb, ota) goes
  to ``device_firmware`` and moves its rollout targets on (:func:`cloud.ota.rollouts.on_status`).
  A board that reports a release of an open rollout on trial gets the cloud's ack of it on its
  ack topic (``{"v":1,"trial":VER,"mac":..}``, the mac with its ack key over
  ``DEVICE|trial|VER``): its first successful cloud ack, which confirms the image even when the
  board has no events to send.
- **Offers.** Every ``ota_poll_ms`` :func:`cloud.ota.rollouts.drive` pauses, advances or ends
  rollouts and returns the offers due; each goes QoS 1 to ``{prefix}/v1/dev/{dev}/ota``; an online
  status of an eligible board gets one at once (a reconnect resumes a download).
- **Chunks.** ``.../ota/req`` ``{"v":1,"id":R,"off":N,"n":K}``: K chunks of 1,024 bytes from N,
  ``QOC1 | id u32 | offset u32 | data`` each, to a board that may fetch the release now.

Run: ``python -m cloud.workers.ota_push`` (settings from ``QADAM_*``), or in-process with
``OtaPush(settings).start()`` / ``.stop()``.
"""

from __future__ import annotations

import json
import logging
import struct
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from cloud.ingest.ackkeys import _mac, ack_key
from cloud.ota import releases, rollouts
from cloud.settings import Settings
from cloud.workers.board_worker import BoardWorker

log = logging.getLogger("qadam.ota")

CHUNK = 1024  # data bytes per chunk (the board's MQTT buffer takes 1,152 with the topic)
MAX_CHUNKS = 16  # a request asks for at most this many
MAGIC = b"QOC1"


@dataclass(frozen=True, slots=True)
class _Msg:
    device: str
    leaf: str  # "status" or "ota/req"
    payload: bytes


def chunk(release_id: int, image: bytes, off: int) -> bytes:
    return MAGIC + struct.pack(">II", release_id, off) + image[off : off + CHUNK]


def trial_ack(key: bytes | None, device: str, version: str) -> bytes:
    doc: dict[str, Any] = {"v": 1, "trial": version}
    if key is not None:
        doc["mac"] = _mac(key, b"%s|trial|%s" % (device.encode(), version.encode())).decode()
    return json.dumps(doc, separators=(",", ":")).encode()


class OtaPush(BoardWorker):
    name = "ota"
    leaves = ("status", "ota/req")

    def __init__(self, settings: Settings) -> None:
        cid = settings.ota_client_id or f"qadam-ota-{uuid.uuid4().hex[:10]}"
        super().__init__(settings, cid, settings.ota_poll_ms)
        self._images: dict[int, bytes] = {}
        self._acked: dict[str, tuple[str, float]] = {}  # device -> (version, when) of a trial ack
        self.stats.update(status=0, offers=0, chunks=0, trial_acks=0, refused=0)

    def accept(self, device: str, leaf: str, msg: mqtt.MQTTMessage) -> _Msg:
        return _Msg(device, leaf, bytes(msg.payload))

    def poll(self, conn: psycopg.Connection[Any]) -> None:
        for device, offer in rollouts.drive(conn):
            self._offer(device, offer)
        conn.commit()

    def _offer(self, device: str, offer: dict[str, Any]) -> None:
        self.publish(device, "ota", json.dumps(offer, separators=(",", ":")).encode())
        self.stats["offers"] += 1
        log.info("ota offer device=%s release=%s", device, offer["ver"])

    def handle(self, conn: psycopg.Connection[Any], msg: _Msg) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(doc, dict) or doc.get("v") != 1:
            return
        if msg.leaf == "ota/req":
            self._serve(conn, msg.device, doc)
        else:
            self._status(conn, msg.device, doc)
        conn.commit()

    def _status(self, conn: psycopg.Connection[Any], device: str, doc: dict[str, Any]) -> None:
        self.stats["status"] += 1
        targets = rollouts.on_status(conn, device, doc)
        if not doc.get("online"):
            return
        for t in targets:
            if t["state"] == "trial" and doc.get("fw") == t["version"]:
                sent = self._acked.get(device)
                if sent is None or sent[0] != t["version"] or time.monotonic() - sent[1] > 5:
                    self._acked[device] = (t["version"], time.monotonic())
                    self.publish(device, "ack", trial_ack(ack_key(conn, device), device,
                                                          t["version"]))  # fmt: skip
                    self.stats["trial_acks"] += 1
                    log.info("ota trial ack device=%s release=%s", device, t["version"])
        # A board that comes online mid-rollout is offered the release at once (its download
        # resumes where it stopped); drive() offers the rest on its own schedule.
        conn.commit()
        for d, offer in rollouts.drive(conn):
            self._offer(d, offer)

    def _serve(self, conn: psycopg.Connection[Any], device: str, req: dict[str, Any]) -> None:
        rid, off, n = req.get("id"), req.get("off"), req.get("n")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (rid, off, n)):
            return
        assert isinstance(rid, int) and isinstance(off, int) and isinstance(n, int)
        if off < 0 or off % CHUNK or not 0 < n <= MAX_CHUNKS:
            return
        if not rollouts.serving(conn, device, rid):
            self.stats["refused"] += 1
            return
        image = self._images.get(rid)
        if image is None:
            image = releases.image(conn, rid)
            if image is None:
                return
            self._images[rid] = image
        for k in range(n):
            o = off + k * CHUNK
            if o >= len(image):
                break
            self.publish(device, "ota", chunk(rid, image, o))
            self.stats["chunks"] += 1


def main(argv: list[str] | None = None) -> int:
    from cloud.startup import start_worker

    return start_worker(
        "cloud.workers.ota_push", lambda s: OtaPush(s).run_forever(), argv, broker=True
    )


if __name__ == "__main__":
    sys.exit(main())
