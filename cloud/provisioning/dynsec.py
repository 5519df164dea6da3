"""Per-board MQTT accounts through Mosquitto's dynamic-security plugin.

The cloud connects as ``settings.mqtt_admin_user`` and sends commands to
``$CONTROL/dynamic-security/v1``; the plugin answers on ``.../v1/response``. Mosquitto 2.0.11 does
not substitute ``%c`` in ACLs, so every board gets its own role (``qadam-board-{device}``) with
literal topics: it may publish only its events, status, command replies and whitelist requests,
and subscribe only to its acks, whitelist chunks and commands (protocol.md "Topics").

Board accounts live in their own namespace (D24-A): the broker username of a board is
``board.{device}``. A device id never holds a dot (``[a-z0-9][a-z0-9-]{0,31}``), so no device id
maps onto a service account (``qadam-ingest``, ``admin``, ...), and no service account may be named
``board.*`` (the ingest refuses to start on one: ``is_board_username``). Before it deletes,
recreates or disables a client, this module checks that the client is a board client of that
device (client id = device id, exactly the role ``qadam-board-{device}``); anything else is left
alone and refused with ``NotABoardAccount``.
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
BOARD_PUBLISH = ("events", "status", "cmd/res", "wl/req", "ota/req")
BOARD_SUBSCRIBE = ("ack", "wl", "cmd", "bal", "ota")


BOARD_USER_PREFIX = "board."


class BrokerError(RuntimeError):
    """The broker could not be reached or refused a command."""


class NotABoardAccount(BrokerError):
    """A broker client or role provisioning would replace was not created by qadam for this
    board (a service account, one made by hand): it is left alone and the request refused."""


def board_username(device: str) -> str:
    """The broker username of a board: ``board.{device}`` (never a device id on its own)."""
    return BOARD_USER_PREFIX + device


def is_board_username(name: str | None) -> bool:
    """True for a name in the boards' namespace: no service account may use one."""
    return bool(name) and str(name).startswith(BOARD_USER_PREFIX)


def role_name(device: str) -> str:
    return f"qadam-board-{device}"


def is_board_client(client: dict[str, Any], device: str) -> bool:
    """``client`` (a dynsec getClient ``data.client``) is the account provisioning made for
    ``device``: bound to client id ``device`` and holding exactly the role of that board."""
    roles = [r.get("rolename") for r in client.get("roles") or [] if isinstance(r, dict)]
    return client.get("clientid") == device and roles == [role_name(device)]


def _acl_set(acls: list[dict[str, Any]]) -> set[tuple[str, str, bool]]:
    return {(str(a.get("acltype")), str(a.get("topic")), bool(a.get("allow"))) for a in acls}


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

    def provision(self, device: str, password: str) -> str:
        """Create (or recreate, with a new password) the board's account; return its username."""
        ...

    def disable(self, device: str, username: str) -> bool:
        """Disable the board's account ``username``; False when there was none to disable."""
        ...


class OpenBroker:
    """mqtt_dynsec=False (the demo): nothing to create; the broker accepts any client."""

    enforced = False

    def provision(self, device: str, password: str) -> str:
        log.warning(
            "broker is OPEN (mqtt_dynsec=False): device %s got credentials, but the broker does "
            "not check them and applies no ACL; any client may publish as this board",
            device,
        )
        return board_username(device)

    def disable(self, device: str, username: str) -> bool:
        log.warning("broker is OPEN (mqtt_dynsec=False): revoking %s cannot lock it out", device)
        return False


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

    def _get(
        self, device: str, username: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The client ``username`` and the role of ``device`` on the broker (None: absent)."""
        got = self.run(
            [
                {"command": "getClient", "username": username},
                {"command": "getRole", "rolename": role_name(device)},
            ]
        )
        self._check(got, {"Client not found", "Role not found"})
        client = got[0].get("data", {}).get("client") if not got[0].get("error") else None
        role = got[1].get("data", {}).get("role") if not got[1].get("error") else None
        return client, role

    def provision(self, device: str, password: str) -> str:
        """(Re)create the board's account ``board.{device}`` and its role. An earlier account of
        this board (a replaced board, a revoked one) is deleted first, so the old password stops
        working and its session is closed; a client or role of that name that is not this
        board's is never touched (``NotABoardAccount``)."""
        username, role = board_username(device), role_name(device)
        client, role_doc = self._get(device, username)
        if client is not None and not is_board_client(client, device):
            log.warning(
                "provision refused device=%s: broker client %s exists and is not this board's"
                " (client id %r, roles %r); left alone",
                device, username, client.get("clientid"), client.get("roles"),
            )  # fmt: skip
            raise NotABoardAccount(
                f"broker client {username} exists and was not created by qadam for board "
                f"{device}; it was left alone (remove it by hand if it is stale)"
            )
        acls = board_acls(self.prefix, device)
        if role_doc is not None and _acl_set(role_doc.get("acls") or []) != _acl_set(acls):
            log.warning(
                "provision refused device=%s: broker role %s exists with other ACLs; left alone",
                device, role,
            )  # fmt: skip
            raise NotABoardAccount(
                f"broker role {role} exists with ACLs qadam did not give it (another topic "
                f"prefix, or made by hand); it was left alone (remove it by hand)"
            )
        commands: list[dict[str, Any]] = []
        if client is not None:
            commands.append({"command": "deleteClient", "username": username})
        if role_doc is None:
            commands.append({"command": "createRole", "rolename": role, "acls": acls})
        commands.append(
            {
                "command": "createClient",
                "username": username,
                "password": password,
                "clientid": device,
                "roles": [{"rolename": role}],
            }
        )
        self._check(self.run(commands), set())
        return username

    def disable(self, device: str, username: str) -> bool:
        """Lock the board out: the account stays (for the record), disabled. ``username`` is the
        one recorded at provisioning: ``board.{device}``, or the device id itself for a board
        provisioned before D24-A. A client of that name that is not this board's is left alone:
        in the boards' namespace that is refused (``NotABoardAccount``); under a bare device id it
        is a service account that merely shares the name, and the board has no account there."""
        client, _role = self._get(device, username)
        if client is None:
            return False
        if not is_board_client(client, device):
            log.warning(
                "disable device=%s: broker client %s is not this board's (client id %r, roles"
                " %r); left alone", device, username, client.get("clientid"), client.get("roles"),
            )  # fmt: skip
            if is_board_username(username):
                raise NotABoardAccount(
                    f"broker client {username} was not created by qadam for board {device}; "
                    "it was left alone"
                )
            return False
        self._check(self.run([{"command": "disableClient", "username": username}]), set())
        return True


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
