"""Per-board MQTT accounts through Mosquitto's dynamic-security plugin.

The cloud connects as ``settings.mqtt_admin_user`` and sends commands to
``$CONTROL/dynamic-security/v1``; the plugin answers on ``.../v1/response``. Mosquitto 2.0.11 does
not substitute ``%c`` in ACLs, so every board gets its own role (``qadam-board-{device}``) with
literal topics: it may publish only its events, status, command replies and whitelist requests,
and subscribe only to its acks, whitelist chunks and commands (protocol.md "Topics").
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.settings import Settings

log = logging.getLogger("qadam.provisioning")

CONTROL = "$CONTROL/dynamic-security/v1"
RESPONSE = CONTROL + "/response"
BOARD_PUBLISH = ("events", "status", "cmd/res", "wl/req")
BOARD_SUBSCRIBE = ("ack", "wl", "cmd", "bal")


class BrokerError(RuntimeError):
    """The broker could not be reached or refused a command."""


def role_name(device: str) -> str:
    return f"qadam-board-{device}"


def board_acls(prefix: str, device: str) -> list[dict[str, Any]]:
    base = f"{prefix}/v1/dev/{device}/"
    acls = [
        {"acltype": "publishClientSend", "topic": base + leaf, "allow": True}
        for leaf in BOARD_PUBLISH
    ]
    acls += [
        {"acltype": "subscribeLiteral", "topic": base + leaf, "allow": True}
        for leaf in BOARD_SUBSCRIBE
    ]
    return acls


class BrokerAccounts(Protocol):
    enforced: bool

    def provision(self, device: str, password: str) -> None: ...

    def disable(self, device: str) -> None: ...


class OpenBroker:
    """mqtt_dynsec=False (the demo): nothing to create; the broker accepts any client."""

    enforced = False

    def provision(self, device: str, password: str) -> None:
        log.warning(
            "broker is OPEN (mqtt_dynsec=False): device %s got credentials, but the broker does "
            "not check them and applies no ACL; any client may publish as this board",
            device,
        )

    def disable(self, device: str) -> None:
        log.warning("broker is OPEN (mqtt_dynsec=False): revoking %s cannot lock it out", device)


class DynSec:
    """A dynamic-security client: one short MQTT connection per call (provisioning is rare)."""

    enforced = True

    def __init__(
        self, host: str, port: int, user: str, password: str | None, prefix: str,
        timeout: float = 5.0,
    ) -> None:  # fmt: skip
        self.host, self.port, self.user, self.password = host, port, user, password
        self.prefix = prefix
        self.timeout = timeout

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` in one message; return the plugin's responses, in order."""
        corr = uuid.uuid4().hex
        cmds = [dict(c, correlationData=f"{corr}-{i}") for i, c in enumerate(commands)]
        done = threading.Event()
        subscribed = threading.Event()
        connected: list[int] = []
        result: list[dict[str, Any]] = []

        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"qadam-dynsec-{corr[:12]}",
            protocol=mqtt.MQTTv311,
        )
        client.username_pw_set(self.user, self.password)

        def on_connect(c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
            connected.append(int(rc.value))
            if rc.is_failure:
                done.set()
                return
            c.subscribe(RESPONSE, qos=1)

        def on_subscribe(_c: mqtt.Client, _u: object, _m: int, rcs: Any, _p: object) -> None:
            subscribed.set()

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            try:
                doc = json.loads(msg.payload)
                responses = doc["responses"]
            except (ValueError, KeyError, TypeError):
                return
            mine = [
                r for r in responses
                if isinstance(r, dict) and str(r.get("correlationData", "")).startswith(corr)
            ]  # fmt: skip
            if mine:
                result.extend(mine)
                if len(result) >= len(cmds):
                    done.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise BrokerError(f"broker {self.host}:{self.port} unreachable: {e}") from e
        client.loop_start()
        try:
            if not subscribed.wait(self.timeout):
                if connected and connected[0] != 0:
                    raise BrokerError(f"broker refused the admin login (code {connected[0]})")
                raise BrokerError("no answer from the broker's dynamic-security plugin")
            client.publish(CONTROL, json.dumps({"commands": cmds}), qos=1)
            if not done.wait(self.timeout):
                raise BrokerError("no answer from the broker's dynamic-security plugin")
        finally:
            client.disconnect()
            client.loop_stop()
        order = {f"{corr}-{i}": i for i in range(len(cmds))}
        return sorted(result, key=lambda r: order.get(str(r.get("correlationData")), 0))

    @staticmethod
    def _check(responses: list[dict[str, Any]], tolerate: set[str]) -> None:
        for r in responses:
            err = r.get("error")
            if err and str(err) not in tolerate:
                raise BrokerError(f"broker refused {r.get('command')}: {err}")

    def provision(self, device: str, password: str) -> None:
        """(Re)create the board's account and role: an earlier account (a replaced board, a
        revoked one) is deleted first, so the old password stops working."""
        role = role_name(device)
        responses = self.run(
            [
                {"command": "deleteClient", "username": device},
                {"command": "deleteRole", "rolename": role},
                {
                    "command": "createRole",
                    "rolename": role,
                    "acls": board_acls(self.prefix, device),
                },
                {
                    "command": "createClient",
                    "username": device,
                    "password": password,
                    "clientid": device,
                    "roles": [{"rolename": role}],
                },
            ]  # fmt: skip
        )
        self._check(responses, {"Client not found", "Role not found"})

    def disable(self, device: str) -> None:
        """Lock the board out: the account stays (for the record), disabled."""
        self._check(
            self.run([{"command": "disableClient", "username": device}]), {"Client not found"}
        )


def broker_accounts(settings: Settings) -> BrokerAccounts:
    if not settings.mqtt_dynsec:
        return OpenBroker()
    if not settings.mqtt_admin_user:
        raise BrokerError("mqtt_dynsec is on but mqtt_admin_user is not set")
    return DynSec(
        settings.mqtt_host,
        settings.mqtt_port,
        settings.mqtt_admin_user,
        settings.mqtt_admin_password,
        settings.topic_prefix,
    )
