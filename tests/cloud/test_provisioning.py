"""Device provisioning: claim tokens (one use, expiry, scope), the board's credential exchange,
revocation; against a real Mosquitto with the dynamic-security plugin (private, free port): a
provisioned board may publish only on its own topics and a revoked board cannot connect."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from api_world import World, build, login_all
from auth_tokens import session_headers
from dynsec_broker import ADMIN, ADMIN_PW, dynsec_mosquitto, free_port
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from psycopg.types.json import Jsonb

from cloud.api.app import create_app
from cloud.api.devices import DEVICE_ID
from cloud.db.migrate import apply, migration_files
from cloud.domain import registry
from cloud.provisioning.dynsec import (
    BOARD_USER_PREFIX,
    DynSec,
    board_acls,
    board_username,
    is_board_username,
)
from cloud.settings import Settings


@contextmanager
def _api(database_url: str, **over: Any) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    s = Settings(database_url=database_url, auth_required=True, **over)
    with TestClient(create_app(s)) as c:
        login_all(c, w, database_url)
        yield c, w


@pytest.fixture
def api(database_url: str) -> Iterator[tuple[TestClient, World]]:
    with _api(database_url) as cw:
        yield cw


def _claim(c: TestClient, w: World, device: str = "gate-1", role: str = "technician") -> str:
    r = c.post(f"/api/v1/devices/{device}/claim-token", headers=w.auth(role))
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def _count(url: str, q: str, params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(q, params).fetchone()
    assert row is not None
    return int(row[0])


# -- API, open broker (mqtt_dynsec=False, the demo default) -------------------------------------


def test_claim_token_is_one_time_and_returns_credentials(
    api: tuple[TestClient, World], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    c, w = api
    r = c.post("/api/v1/devices/gate-1/claim-token", headers=w.auth("technician"))
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert len(token) >= 40 and r.json()["device"] == "gate-1"
    # stored hashed, never in clear, and audited without the secret
    assert _count(database_url, "SELECT count(*) FROM device_claim_tokens WHERE token_hash = %s",
                  (hashlib.sha256(token.encode()).digest(),)) == 1  # fmt: skip
    assert _count(database_url, "SELECT count(*) FROM audit_log WHERE entity = 'claim_token'"
                  " AND after::text LIKE %s", (f"%{token}%",)) == 0  # fmt: skip
    with caplog.at_level("WARNING", logger="qadam.provisioning"):
        r = c.post("/api/v1/provision", json={"device": "gate-1", "token": token})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device"] == "gate-1" and body["school"] == "s1"
    assert body["site_key"] == (b"k" * 32).hex()
    m = body["mqtt"]
    assert m["user"] == "board.gate-1" and len(m["password"]) >= 24 and m["acl"] is False
    assert (m["host"], m["port"], m["prefix"]) == ("127.0.0.1", 1883, "qadam")
    assert "OPEN" in caplog.text  # the demo broker is open, and the log says so
    # one use only
    r = c.post("/api/v1/provision", json={"device": "gate-1", "token": token})
    assert r.status_code == 403, r.text
    assert _count(database_url, "SELECT count(*) FROM device_credentials"
                  " WHERE device_id = 'gate-1' AND revoked_at IS NULL") == 1  # fmt: skip


def test_bad_claims_are_refused_and_change_nothing(
    api: tuple[TestClient, World], database_url: str
) -> None:
    c, w = api
    token = _claim(c, w)
    for body, status in (
        ({"device": "gate-1", "token": "x" * 43}, 403),  # wrong token
        ({"device": "gate-2", "token": token}, 403),  # another device's token
        ({"device": "gate-1"}, 422),
        ({"device": "gate-1", "token": token, "extra": 1}, 422),
        ({"device": "Gate 1", "token": token}, 422),
        ({"device": "gate-1", "token": "short"}, 422),
        ({"device": "gate-1", "token": 12345678901234567890}, 422),
    ):
        r = c.post("/api/v1/provision", json=body)
        assert r.status_code == status, (body, r.text)
    assert _count(database_url, "SELECT count(*) FROM device_credentials") == 0
    # expired
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE device_claim_tokens SET created_at = now() - interval '2 days',"
            " expires_at = now() - interval '1 second'"
        )
    r = c.post("/api/v1/provision", json={"device": "gate-1", "token": token})
    assert r.status_code == 403, r.text
    assert _count(database_url, "SELECT count(*) FROM device_credentials") == 0
    assert _count(database_url, "SELECT count(*) FROM device_claim_tokens"
                  " WHERE used_at IS NOT NULL") == 0  # fmt: skip


def test_claim_token_scope(api: tuple[TestClient, World]) -> None:
    c, w = api
    # technician of s1: not gate-3 (s3, another district) -> 404 like a missing device
    assert (
        c.post("/api/v1/devices/gate-3/claim-token", headers=w.auth("technician")).status_code
        == 404
    )
    assert (
        c.post("/api/v1/devices/nope/claim-token", headers=w.auth("technician")).status_code == 404
    )
    for role in ("district_authority", "canteen_operator", "guardian"):
        r = c.post("/api/v1/devices/gate-1/claim-token", headers=w.auth(role))
        assert r.status_code == 403, role
    assert c.post("/api/v1/devices/gate-1/claim-token").status_code == 401
    assert (
        c.post("/api/v1/devices/gate-3/claim-token", headers=w.auth("platform_admin")).status_code
        == 201
    )


def test_revoke_voids_tokens_and_credentials(
    api: tuple[TestClient, World], database_url: str
) -> None:
    c, w = api
    tech = w.auth("technician")
    assert c.post("/api/v1/devices/gate-1/revoke", headers=tech).status_code == 409  # nothing yet
    pending = _claim(c, w)
    r = c.post("/api/v1/devices/gate-1/revoke", headers=tech)
    assert r.status_code == 200 and r.json() == {
        "device": "gate-1", "credentials_revoked": False, "tokens_revoked": 1, "retired": False,
    }, r.text  # fmt: skip
    assert (
        c.post("/api/v1/provision", json={"device": "gate-1", "token": pending}).status_code == 403
    )
    token = _claim(c, w)
    assert c.post("/api/v1/provision", json={"device": "gate-1", "token": token}).status_code == 200
    r = c.post("/api/v1/devices/gate-1/revoke", headers=tech)
    assert r.status_code == 200 and r.json()["credentials_revoked"] is True
    assert c.post("/api/v1/devices/gate-1/revoke", headers=tech).status_code == 409
    assert c.post("/api/v1/devices/gate-3/revoke", headers=tech).status_code == 404
    assert _count(database_url, "SELECT count(*) FROM audit_log WHERE action = 'revoke'"
                  " AND entity = 'device_credentials'") == 2  # fmt: skip
    # a new claim token re-provisions the device
    token = _claim(c, w)
    assert c.post("/api/v1/provision", json={"device": "gate-1", "token": token}).status_code == 200
    assert _count(database_url, "SELECT count(*) FROM device_credentials"
                  " WHERE revoked_at IS NULL") == 1  # fmt: skip


def test_dynsec_unreachable_is_503_and_token_stays_usable(database_url: str) -> None:
    port = free_port()  # nothing listens there
    with _api(database_url, mqtt_dynsec=True, mqtt_port=port, mqtt_admin_user="a",
              mqtt_admin_password="b") as (c, w):  # fmt: skip
        token = _claim(c, w)
        r = c.post("/api/v1/provision", json={"device": "gate-1", "token": token})
        assert r.status_code == 503, r.text
        assert _count(database_url, "SELECT count(*) FROM device_credentials") == 0
        assert _count(database_url, "SELECT count(*) FROM device_claim_tokens"
                      " WHERE used_at IS NULL") == 1  # fmt: skip


# -- real Mosquitto with the dynamic-security plugin -------------------------------------------


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> Iterator[int]:
    with dynsec_mosquitto(tmp_path) as port:
        yield port


class Peer:
    """A paho client that records its connect result, messages and disconnects."""

    def __init__(self, port: int, cid: str, user: str | None, password: str | None) -> None:
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid,
                             protocol=mqtt.MQTTv311)  # fmt: skip
        self.rc: int | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.got: list[tuple[str, bytes]] = []
        self.suback: list[list[int]] = []
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *_a: self.disconnected.set()
        self.c.on_message = lambda _c, _u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.on_subscribe = lambda _c, _u, _m, rcs, _p: self.suback.append(
            [int(rc.value) for rc in rcs]
        )
        if user is not None:
            self.c.username_pw_set(user, password)
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        self.rc = int(rc.value)
        self.connected.set()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _wait(pred: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def test_provisioned_boards_are_confined_and_revocable(
    database_url: str, dynsec_broker: int
) -> None:
    port, prefix = dynsec_broker, "qx"
    admin = DynSec("127.0.0.1", port, ADMIN, ADMIN_PW, prefix)
    # an observer account that reads everything under the prefix (plays the cloud)
    admin.run([
        {"command": "createRole", "rolename": "observer",
         "acls": [{"acltype": "subscribePattern", "topic": f"{prefix}/#", "allow": True}]},
        {"command": "createClient", "username": "observer", "password": "obs-pw",
         "roles": [{"rolename": "observer"}]},
    ])  # fmt: skip
    with _api(database_url, mqtt_dynsec=True, mqtt_port=port, topic_prefix=prefix,
              mqtt_admin_user=ADMIN, mqtt_admin_password=ADMIN_PW) as (c, w):  # fmt: skip
        creds = {}
        for dev in ("gate-1", "gate-2"):
            role = "technician" if dev == "gate-1" else "platform_admin"
            token = _claim(c, w, dev, role)
            r = c.post("/api/v1/provision", json={"device": dev, "token": token})
            assert r.status_code == 200, r.text
            assert r.json()["mqtt"]["acl"] is True and r.json()["mqtt"]["port"] == port
            creds[dev] = r.json()["mqtt"]["password"]
        role_doc = admin.run([{"command": "getRole", "rolename": "qadam-board-gate-1"}])[0]
        assert sorted(a["topic"] for a in role_doc["data"]["role"]["acls"]) == sorted(
            a["topic"] for a in board_acls(prefix, "gate-1")
        )

        obs = Peer(port, "observer", "observer", "obs-pw")
        assert obs.rc == 0
        obs.c.subscribe(f"{prefix}/#", qos=1)
        assert _wait(lambda: obs.suback == [[1]])

        # anonymous and wrong passwords are refused
        assert Peer(port, "anon", None, None).rc != 0
        assert Peer(port, "gate-1", "board.gate-1", creds["gate-2"]).rc != 0
        # the account is bound to its client id too
        assert Peer(port, "other-id", "board.gate-1", creds["gate-1"]).rc != 0

        a = Peer(port, "gate-1", "board.gate-1", creds["gate-1"])
        assert a.rc == 0
        for leaf in ("events", "status", "cmd/res", "wl/req"):
            a.c.publish(f"{prefix}/v1/dev/gate-1/{leaf}", b"{}", qos=1).wait_for_publish(5)
        assert _wait(lambda: len(obs.got) == 4), obs.got
        # its own downlink topics: granted; another board's: refused (0x80)
        a.c.subscribe([(f"{prefix}/v1/dev/gate-1/{leaf}", 1) for leaf in ("ack", "wl", "cmd")])
        assert _wait(lambda: a.suback == [[1, 1, 1]]), a.suback
        a.c.subscribe(f"{prefix}/v1/dev/gate-2/ack", qos=1)
        assert _wait(lambda: len(a.suback) == 2) and a.suback[1] == [128], a.suback
        # posing as gate-2: not delivered (and Mosquitto 2.0.11 drops the 3.1.1 connection)
        a.c.publish(f"{prefix}/v1/dev/gate-2/events", b"forged", qos=1)
        a.c.publish(f"{prefix}/v1/dev/gate-1/ack", b"forged-ack", qos=1)  # a downlink topic
        time.sleep(0.7)
        assert [t for t, _ in obs.got if "gate-2" in t or t.endswith("/ack")] == []
        a.close()

        b = Peer(port, "gate-2", "board.gate-2", creds["gate-2"])
        assert b.rc == 0
        b.close()

        # revoke gate-1: it cannot connect any more; gate-2 still can
        r = c.post("/api/v1/devices/gate-1/revoke", headers=w.auth("technician"))
        assert r.status_code == 200 and r.json()["credentials_revoked"] is True, r.text
        assert Peer(port, "gate-1", "board.gate-1", creds["gate-1"]).rc != 0
        b = Peer(port, "gate-2", "board.gate-2", creds["gate-2"])
        assert b.rc == 0
        b.close()

        # re-provisioning gate-1 issues a new password; the old one stays dead
        token = _claim(c, w)
        r = c.post("/api/v1/provision", json={"device": "gate-1", "token": token})
        assert r.status_code == 200, r.text
        new_pw = r.json()["mqtt"]["password"]
        assert new_pw != creds["gate-1"]
        assert Peer(port, "gate-1", "board.gate-1", creds["gate-1"]).rc != 0
        a = Peer(port, "gate-1", "board.gate-1", new_pw)
        assert a.rc == 0
        a.close()
        obs.close()


# -- issue #13: board accounts in their own namespace; deleting a device locks its board out ---


def test_board_usernames_have_their_own_namespace() -> None:
    assert BOARD_USER_PREFIX == "board."
    assert board_username("gate-1") == "board.gate-1"
    assert board_username("qadam-ingest") == "board.qadam-ingest"
    assert is_board_username("board.gate-1") and is_board_username("board.")
    for name in ("gate-1", "qadam-ingest", "admin", "boards", "board", "", None):
        assert not is_board_username(name), name
    # a device id never holds a dot, so no device id is a board username or the other way round
    assert re.fullmatch(DEVICE_ID, "board.gate-1") is None


def _client_doc(admin: DynSec, username: str) -> dict[str, Any]:
    (r,) = admin.run([{"command": "getClient", "username": username}])
    assert "error" not in r, r
    client: dict[str, Any] = r["data"]["client"]
    return client


def _login_rc(port: int, cid: str, user: str, password: str) -> int:
    peer = Peer(port, cid, user, password)
    peer.close()
    assert peer.rc is not None
    return peer.rc


# Every broker account name the docs and deploy config use (docs/ingest.md "Broker",
# docs/provisioning.md, deploy/mosquitto/mosquitto.conf: `dynsec init ... admin`; settings'
# default ingest client id; the tests' admin) and the worker names of settings.py.
SERVICE_NAMES = (
    "admin", "qadam-admin", "qadam-ingest", "qadam-ingest-1", "qadam-ingest-2",
    "qadam-demo-ingest", "qadam-wl", "qadam-bal", "qadam-outbox", "qadam-dynsec", "observer",
)  # fmt: skip


def test_a_device_named_like_a_service_account_cannot_touch_it(
    database_url: str, dynsec_broker: int
) -> None:
    """Issue #13 item 1: a school admin registers a device named like a broker service account
    and provisions it. Before: the service account was deleted and replaced by the board's
    (the ingest looped on 'not authorized'; with `qadam-admin`, every later provision failed)."""
    port, prefix = dynsec_broker, "qx"
    admin = DynSec("127.0.0.1", port, ADMIN, ADMIN_PW, prefix)
    admin.run([
        {"command": "createRole", "rolename": "ingest", "acls": [
            {"acltype": "subscribePattern", "topic": f"{prefix}/v1/dev/+/events", "allow": True},
            {"acltype": "publishClientSend", "topic": f"{prefix}/v1/dev/+/ack", "allow": True}]},
    ] + [
        {"command": "createClient", "username": name, "password": f"pw-{name}",
         "roles": [{"rolename": "admin" if name == "admin" else "ingest"}]}
        for name in SERVICE_NAMES if name != ADMIN
    ])  # fmt: skip
    passwords = {name: f"pw-{name}" for name in SERVICE_NAMES} | {ADMIN: ADMIN_PW}
    before = {name: _client_doc(admin, name) for name in SERVICE_NAMES}
    with _api(database_url, mqtt_dynsec=True, mqtt_port=port, topic_prefix=prefix,
              mqtt_admin_user=ADMIN, mqtt_admin_password=ADMIN_PW) as (c, w):  # fmt: skip
        h = w.auth("school_admin")
        boards = {}
        for name in SERVICE_NAMES:
            r = c.post("/api/v1/devices", json={"id": name, "school_id": "s1", "mode": "door"},
                       headers=h)  # fmt: skip
            assert r.status_code == 201, r.text
            token = _claim(c, w, name, "school_admin")
            r = c.post("/api/v1/provision", json={"device": name, "token": token})
            assert r.status_code == 200, (name, r.text)
            m = r.json()["mqtt"]
            assert m["user"] == f"board.{name}" and m["acl"] is True
            boards[name] = m["password"]
        assert _count(database_url, "SELECT count(*) FROM device_credentials WHERE"
                      " mqtt_username = 'board.' || device_id") == len(SERVICE_NAMES)  # fmt: skip
        # every service account is as it was and still logs in; each board logs in as board.<id>
        for name in SERVICE_NAMES:
            assert _client_doc(admin, name) == before[name], name
            assert _login_rc(port, f"{name}-svc", name, passwords[name]) == 0, name
            assert _login_rc(port, name, f"board.{name}", boards[name]) == 0, name
            # the board's password is not the service account's
            assert _login_rc(port, f"{name}-svc", name, boards[name]) != 0, name
        # revoke half, delete the other half: the service accounts are still untouched
        for i, name in enumerate(SERVICE_NAMES):
            if i % 2:
                r = c.post(f"/api/v1/devices/{name}/revoke", headers=h)
                assert r.status_code == 200 and r.json()["credentials_revoked"], r.text
            else:
                assert c.delete(f"/api/v1/devices/{name}", headers=h).status_code == 204
        for name in SERVICE_NAMES:
            assert _client_doc(admin, name) == before[name], name
            assert _login_rc(port, f"{name}-svc", name, passwords[name]) == 0, name
            assert _client_doc(admin, f"board.{name}").get("disabled") is True, name
            assert _login_rc(port, name, f"board.{name}", boards[name]) != 0, name
        # the broker admin survived: provisioning still works
        r = c.post("/api/v1/provision", json={"device": "gate-1", "token": _claim(c, w)})
        assert r.status_code == 200, r.text


def test_provisioning_refuses_to_replace_a_client_it_did_not_create(
    database_url: str, dynsec_broker: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A client or role in the boards' namespace that is not this board's (made by hand) is
    left alone: 409, nothing changes, the claim token stays usable."""
    port, prefix = dynsec_broker, "qx"
    admin = DynSec("127.0.0.1", port, ADMIN, ADMIN_PW, prefix)
    admin.run([
        {"command": "createRole", "rolename": "other",
         "acls": [{"acltype": "subscribePattern", "topic": "#", "allow": True}]},
        {"command": "createClient", "username": "board.gate-1", "password": "hand-made",
         "roles": [{"rolename": "other"}]},
    ])  # fmt: skip
    hand_made = _client_doc(admin, "board.gate-1")
    with _api(database_url, mqtt_dynsec=True, mqtt_port=port, topic_prefix=prefix,
              mqtt_admin_user=ADMIN, mqtt_admin_password=ADMIN_PW) as (c, w):  # fmt: skip
        token = _claim(c, w)
        with caplog.at_level("WARNING", logger="qadam.provisioning"):
            r = c.post("/api/v1/provision", json={"device": "gate-1", "token": token})
        assert r.status_code == 409, r.text
        assert "board.gate-1" in r.json()["detail"] and "left alone" in r.json()["detail"]
        assert "provision refused device=gate-1" in caplog.text
        assert _client_doc(admin, "board.gate-1") == hand_made
        assert _login_rc(port, "x", "board.gate-1", "hand-made") == 0
        assert _count(database_url, "SELECT count(*) FROM device_credentials") == 0
        assert _count(database_url, "SELECT count(*) FROM device_claim_tokens"
                      " WHERE used_at IS NULL") == 1  # fmt: skip
        # a role named like the board's but with other ACLs: refused the same way
        admin.run([
            {"command": "deleteClient", "username": "board.gate-1"},
            {"command": "createRole", "rolename": "qadam-board-gate-1",
             "acls": [{"acltype": "subscribePattern", "topic": "#", "allow": True}]},
        ])  # fmt: skip
        r = c.post("/api/v1/provision", json={"device": "gate-1", "token": token})
        assert r.status_code == 409 and "qadam-board-gate-1" in r.json()["detail"], r.text
        (role,) = admin.run([{"command": "getRole", "rolename": "qadam-board-gate-1"}])
        assert [a["topic"] for a in role["data"]["role"]["acls"]] == ["#"]
        # once the operator removed it, the same token works
        admin.run([{"command": "deleteRole", "rolename": "qadam-board-gate-1"}])
        r = c.post("/api/v1/provision", json={"device": "gate-1", "token": token})
        assert r.status_code == 200, r.text


def test_deleting_a_provisioned_device_locks_its_board_out_and_retires_its_id(
    database_url: str, dynsec_broker: int
) -> None:
    """Issue #13 item 2, the attack as reported: a provisioned device without events is
    deleted; before, its broker account kept working, revoke answered 404, and another school
    could register the same id and have the old board's taps stored as its own."""
    port, prefix = dynsec_broker, "qx"
    admin = DynSec("127.0.0.1", port, ADMIN, ADMIN_PW, prefix)
    with _api(database_url, mqtt_dynsec=True, mqtt_port=port, topic_prefix=prefix,
              mqtt_admin_user=ADMIN, mqtt_admin_password=ADMIN_PW) as (c, w):  # fmt: skip
        tech, admin3 = w.auth("technician"), session_headers(database_url, w.ids["admin3"])
        door = {"id": "door-7", "school_id": "s1", "mode": "door"}
        assert c.post("/api/v1/devices", json=door, headers=tech).status_code == 201
        r = c.post("/api/v1/provision", json={"device": "door-7", "token": _claim(c, w, "door-7")})
        assert r.status_code == 200, r.text
        pw = r.json()["mqtt"]["password"]
        assert _login_rc(port, "door-7", "board.door-7", pw) == 0

        assert c.delete("/api/v1/devices/door-7", headers=tech).status_code == 204
        # the board is locked out by the same request
        assert _login_rc(port, "door-7", "board.door-7", pw) != 0
        assert _client_doc(admin, "board.door-7").get("disabled") is True
        assert _count(database_url, "SELECT count(*) FROM audit_log WHERE action = 'revoke'"
                      " AND entity_id = 'door-7'") == 1  # fmt: skip
        # revoke on the deleted device: not a 404 that leaves the account alive
        r = c.post("/api/v1/devices/door-7/revoke", headers=tech)
        assert r.status_code == 200, r.text
        assert r.json() == {"device": "door-7", "credentials_revoked": True,
                            "tokens_revoked": 0, "retired": True}  # fmt: skip
        # ... but still a 404 for someone outside the school, same as a missing device
        assert c.post("/api/v1/devices/door-7/revoke", headers=admin3).status_code == 404
        # another school cannot take the id (its school admin, nor the platform admin for it)
        for h in (admin3, w.auth("platform_admin")):
            r = c.post("/api/v1/devices", json=door | {"school_id": "s3"}, headers=h)
            assert r.status_code == 409 and "not reused across schools" in r.text, r.text
        # nor by a path other than the API (the database refuses it too)
        with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
            registry.register_device(conn, "door-7", "s3", "", "door", "")
        assert _count(database_url, "SELECT count(*) FROM devices WHERE id = 'door-7'") == 0
        assert _login_rc(port, "door-7", "board.door-7", pw) != 0
        # the same school may take its id back; the old board stays out until re-provisioned
        assert c.post("/api/v1/devices", json=door, headers=tech).status_code == 201
        assert _count(database_url, "SELECT count(*) FROM retired_devices") == 0
        assert _login_rc(port, "door-7", "board.door-7", pw) != 0
        r = c.post("/api/v1/provision", json={"device": "door-7", "token": _claim(c, w, "door-7")})
        assert r.status_code == 200, r.text
        assert _login_rc(port, "door-7", "board.door-7", r.json()["mqtt"]["password"]) == 0


def test_a_delete_the_broker_refuses_deletes_nothing(database_url: str) -> None:
    port = free_port()  # nothing listens there
    with _api(database_url, mqtt_dynsec=True, mqtt_port=port, mqtt_admin_user="a",
              mqtt_admin_password="b") as (c, w):  # fmt: skip
        tech = w.auth("technician")
        door = {"id": "door-7", "school_id": "s1", "mode": "door"}
        assert c.post("/api/v1/devices", json=door, headers=tech).status_code == 201
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "INSERT INTO device_credentials (device_id, mqtt_username, broker_acl)"
                " VALUES ('door-7', 'board.door-7', true)"
            )
        r = c.delete("/api/v1/devices/door-7", headers=tech)
        assert r.status_code == 503 and "could not be disabled" in r.text, r.text
        assert _count(database_url, "SELECT count(*) FROM devices WHERE id = 'door-7'") == 1
        assert _count(database_url, "SELECT count(*) FROM device_credentials") == 1
        assert _count(database_url, "SELECT count(*) FROM retired_devices") == 0
        # a device without live credentials needs no broker
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE device_credentials SET revoked_at = now()")
        assert c.delete("/api/v1/devices/door-7", headers=tech).status_code == 204


def test_boards_provisioned_before_the_namespace_are_locked_out_on_reprovision_and_delete(
    database_url: str, dynsec_broker: int
) -> None:
    """Accounts made before D24-A are named by the bare device id. Re-provisioning moves the
    board to board.<id> and disables the old account; deleting disables it; a bare-id account
    that is not a board's (a service account restored by hand) is left alone."""
    port, prefix = dynsec_broker, "qx"
    admin = DynSec("127.0.0.1", port, ADMIN, ADMIN_PW, prefix)
    legacy = [
        {"command": "createRole", "rolename": f"qadam-board-{d}", "acls": board_acls(prefix, d)}
        for d in ("gate-1", "door-7")
    ] + [
        {"command": "createClient", "username": d, "password": f"old-{d}", "clientid": d,
         "roles": [{"rolename": f"qadam-board-{d}"}]}
        for d in ("gate-1", "door-7")
    ] + [
        {"command": "createClient", "username": "door-8", "password": "svc", "roles": []},
    ]  # fmt: skip
    admin.run(legacy)
    with _api(database_url, mqtt_dynsec=True, mqtt_port=port, topic_prefix=prefix,
              mqtt_admin_user=ADMIN, mqtt_admin_password=ADMIN_PW) as (c, w):  # fmt: skip
        tech = w.auth("technician")
        for d in ("door-7", "door-8"):
            r = c.post("/api/v1/devices", json={"id": d, "school_id": "s1", "mode": "door"},
                       headers=tech)  # fmt: skip
            assert r.status_code == 201, r.text
        with psycopg.connect(database_url) as conn:
            for d in ("gate-1", "door-7", "door-8"):
                conn.execute(
                    "INSERT INTO device_credentials (device_id, mqtt_username, broker_acl)"
                    " VALUES (%s, %s, true)", (d, d),
                )  # fmt: skip
        assert _login_rc(port, "gate-1", "gate-1", "old-gate-1") == 0
        r = c.post("/api/v1/provision", json={"device": "gate-1", "token": _claim(c, w)})
        assert r.status_code == 200 and r.json()["mqtt"]["user"] == "board.gate-1", r.text
        assert _login_rc(port, "gate-1", "gate-1", "old-gate-1") != 0
        assert _login_rc(port, "gate-1", "board.gate-1", r.json()["mqtt"]["password"]) == 0

        assert _login_rc(port, "door-7", "door-7", "old-door-7") == 0
        assert c.delete("/api/v1/devices/door-7", headers=tech).status_code == 204
        assert _login_rc(port, "door-7", "door-7", "old-door-7") != 0
        # door-8's recorded name is an account that is not a board's: untouched
        assert c.delete("/api/v1/devices/door-8", headers=tech).status_code == 204
        assert _login_rc(port, "x", "door-8", "svc") == 0
        assert _client_doc(admin, "door-8").get("disabled") is not True


def test_devices_deleted_before_0016_get_tombstones_from_the_audit_log(
    empty_database_url: str, tmp_path: Path
) -> None:
    url = empty_database_url
    before = [p for p in migration_files() if p.name < "0016"]
    for p in before:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    apply(url, tmp_path)
    with psycopg.connect(url) as conn:
        registry.create_school(conn, "s1", "School 1", b"k" * 32)
        registry.register_device(conn, "old-3", "s1", "", "door", "")  # deleted, then re-added
        for entity, action, device in (
            ("device_credentials", "create", "old-1"), ("devices", "delete", "old-1"),
            ("devices", "delete", "old-2"), ("devices", "delete", "old-3"),
        ):  # fmt: skip
            conn.execute(
                "INSERT INTO audit_log (actor, action, entity, entity_id, school_id, before)"
                " VALUES ('t', %s, %s, %s, 's1', %s)",
                (action, entity, device, Jsonb({"id": device, "school_id": "s1"})),
            )
    assert "0016_retired_devices.sql" in apply(url)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT device_id, school_id, mqtt_username FROM retired_devices ORDER BY 1"
        ).fetchall()
    assert rows == [("old-1", "s1", "old-1"), ("old-2", "s1", None)]
