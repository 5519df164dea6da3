"""--wait-online: watch the board's retained status topic until the rebooted board says online."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tools.flashing import EXIT_BROKER, EXIT_OFFLINE, FlashError


def status_topic(prefix: str, device: str) -> str:
    return f"{prefix}/v1/dev/{device}/status"  # docs/protocol.md


class StatusWatch:
    """Subscribed before the board is reset, so the status the rebooted board publishes arrives
    live. The retained message delivered on subscribing is the *previous* boot's (or a last
    will) and does not count."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        *,
        user: str | None = None,
        password: str | None = None,
        connect_timeout: float = 5.0,
        ca_pem: str | None = None,
        server_hostname: str | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.topic = topic
        self.where = f"{host}:{port}"
        self._cond = threading.Condition()
        self._messages: list[tuple[float, bool, bytes]] = []
        self._subscribed = False
        self._refused = ""  # why the broker refused the login or the subscription
        self._since = float("inf")
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"qadam-flash-{int(time.time() * 1000) % 10**9}",
            protocol=mqtt.MQTTv311,
        )
        if user:
            self.client.username_pw_set(user, password)
        if ca_pem:  # a TLS broker: verified with the CA the board was given, as the board does
            import ssl

            ctx = ssl.create_default_context(cadata=ca_pem)
            if server_hostname and server_hostname != host:
                # paho checks the name it connected to; the board checks server_hostname. The
                # CA still signs what we accept, and the watch only reads a status.
                ctx.check_hostname = False
            self.client.tls_set_context(ctx)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect = self._on_connect
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise FlashError(
                f"--wait-online: cannot reach the MQTT broker at {self.where}: {exc} "
                "(check the broker, or point at it with --broker HOST:PORT)",
                EXIT_BROKER,
            ) from None
        self.client.loop_start()
        self.client.subscribe(topic, 1)
        deadline = time.monotonic() + connect_timeout
        with self._cond:
            while not self._subscribed:
                left = deadline - time.monotonic()
                if self._refused:
                    self.close()
                    raise FlashError(
                        f"--wait-online: the MQTT broker at {self.where} refused {self._refused}; "
                        "a broker with accounts needs one that may read the boards' status "
                        "(--broker-user USER --broker-password-file FILE, docs/flashing.md)",
                        EXIT_BROKER,
                    )
                if left <= 0:
                    self.close()
                    raise FlashError(
                        f"--wait-online: the MQTT broker at {self.where} did not accept the "
                        f"subscription to {topic} in {connect_timeout:.0f}s",
                        EXIT_BROKER,
                    )
                self._cond.wait(left)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            with self._cond:
                self._refused = f"the login ({reason_code})"
                self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:
        with self._cond:
            if reason_codes and reason_codes[0].is_failure:
                self._refused = f"the subscription to {self.topic} (not authorised to read it)"
            else:
                self._subscribed = True
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self._messages.append((time.monotonic(), bool(msg.retain), bytes(msg.payload)))
            self._cond.notify_all()

    def arm(self) -> None:
        """From now on (the board is being reset), a live online status counts."""
        with self._cond:
            self._since = time.monotonic()

    def wait(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, retained, payload in self._messages:
                    if at < self._since or retained:
                        continue
                    try:
                        doc = json.loads(payload)
                    except ValueError:
                        continue
                    if isinstance(doc, dict) and doc.get("online") is True:
                        return doc
                left = deadline - time.monotonic()
                if left <= 0:
                    last = (
                        self._messages[-1][2].decode(errors="replace") if self._messages else None
                    )
                    raise FlashError(
                        f"the board did not report online on {self.topic} at {self.where} within "
                        f"{timeout:.0f}s (last status seen: {last or 'none'}); the files are on "
                        "the board: check its Wi-Fi/MQTT settings in device.json and its console "
                        "(mpremote connect PORT repl)",
                        EXIT_OFFLINE,
                    )
                self._cond.wait(min(left, 0.5))

    def close(self) -> None:
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except OSError:
            pass
