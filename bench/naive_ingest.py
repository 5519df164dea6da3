"""The baseline consumer: for each message, one autocommitted INSERT per event, then the ack.

Same decoder and same dedupe and ack contract as the real ingest, none of its batching (no
COPY, no grouping of messages into one transaction, PUBACK as soon as the callback returns).
Reads the same QADAM_* settings. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.db.conn import connect
from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import Ack
from cloud.settings import get_settings

INSERT = """
INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind, reader, result,
                    reason, board_time, clock_synced, uptime_ms, occurred_at)
SELECT %(dev)s, %(boot)s, %(seq)s, d.school_id, p.id, %(card)s, %(kind)s, %(reader)s,
       %(result)s, %(reason)s, to_timestamp(%(t)s), %(sync)s, %(up)s, to_timestamp(%(t)s)
FROM devices d
LEFT JOIN cards c ON c.card_key = %(card)s
LEFT JOIN people p ON p.id = c.person_id AND p.school_id = d.school_id
WHERE d.id = %(dev)s
ON CONFLICT DO NOTHING
"""


def main() -> None:
    s = get_settings()
    conn = connect(s.database_url, autocommit=True, application_name="qadam-naive")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=s.ingest_client_id, clean_session=False,
                         protocol=mqtt.MQTTv311)  # fmt: skip

    def on_connect(c: mqtt.Client, *_a: Any) -> None:
        c.subscribe(f"{s.topic_prefix}/v1/dev/+/events", qos=1)
        print("naive subscribed", flush=True)

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        b = decode(msg.topic, msg.payload)
        if not isinstance(b, Batch):
            return
        for e in b.events:
            conn.execute(INSERT, {"dev": b.device, "boot": e.boot, "seq": e.seq, "card": e.card,
                                  "kind": e.kind, "reader": e.reader, "result": e.result,
                                  "reason": e.reason, "t": e.t, "sync": e.sync == 1, "up": e.up})
        ack = Ack(b.device, b.boot, b.first, b.last)
        c.publish(ack.topic(s.topic_prefix), ack.payload(), qos=1)

    client.on_connect = on_connect
    client.on_message = on_message
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    client.connect(s.mqtt_host, s.mqtt_port, keepalive=60)
    client.loop_start()
    done.wait()
    client.disconnect()
    client.loop_stop()
    conn.close()


if __name__ == "__main__":
    main()
