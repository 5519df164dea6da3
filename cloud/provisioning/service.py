"""Claim tokens and the board's credential exchange (docs/provisioning.md).

Functions take the request's connection and do not commit (the API's request transaction does,
D8); a broker failure raises before the commit, so the claim token stays unused.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Conflict, DomainError, NotFound
from cloud.ingest.ackkeys import boot_floor
from cloud.ingest.ackkeys import new_key as new_ack_key
from cloud.provisioning import boardsetup
from cloud.provisioning.dynsec import BrokerAccounts, board_username
from cloud.settings import Settings

log = logging.getLogger("qadam.provisioning")

Conn = psycopg.Connection[Any]


class BadClaim(DomainError):
    """Wrong, used, expired or foreign claim token (one answer for all: nothing to probe)."""


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_claim_token(
    conn: Conn, actor: Principal, device_id: str, school_id: str, ttl_s: int
) -> tuple[str, datetime]:
    """A one-time token for ``device_id`` (32 random bytes, URL-safe); only its hash is kept."""
    token = "c" + secrets.token_urlsafe(32)  # never starts with "-": not a CLI option (#13 item 11)
    row = conn.execute(
        "INSERT INTO device_claim_tokens (token_hash, device_id, created_by, expires_at)"
        " VALUES (%s, %s, %s, now() + make_interval(secs => %s)) RETURNING expires_at",
        (_hash(token), device_id, actor.user_id, ttl_s),
    ).fetchone()
    assert row is not None
    expires: datetime = row[0]
    store.audit(
        conn, actor, "create", "claim_token", device_id, None,
        {"device_id": device_id, "expires_at": expires}, school_id,
    )  # fmt: skip
    return token, expires


@dataclass(frozen=True)
class Credentials:
    device: str
    school: str
    site_key: bytes
    username: str
    password: str
    host: str
    port: int
    prefix: str
    broker_acl: bool
    ack_key: bytes = b""  # device.json "ack_key": the cloud signs its acks with it (D24-B)
    boot_floor: int = 0  # device.json "boot_floor": the board's boots start above it (D24-B)
    # What only the cloud knows of the board's setting-up (boardsetup.py, D27-C)
    tls: bool = False
    ca_pem: str | None = None  # the CA the board verifies the broker with (when tls)
    server_hostname: str | None = None  # the name the broker's certificate is for (when tls)
    ntp: tuple[str, ...] = ()
    timezone: str = "Asia/Almaty"
    tz_offset_min: int = 300
    mode: str = "door"


def provision(
    conn: Conn, settings: Settings, broker: BrokerAccounts, device_id: str, token: str
) -> Credentials:
    """Use the claim token (once) and give the board its broker account."""
    row = conn.execute(
        "SELECT t.device_id, t.used_at, t.expires_at <= now() AS expired, d.school_id, s.site_key,"
        " s.timezone, d.mode"
        " FROM device_claim_tokens t JOIN devices d ON d.id = t.device_id"
        " JOIN schools s ON s.id = d.school_id"
        " WHERE t.token_hash = %s FOR UPDATE OF t",
        (_hash(token),),
    ).fetchone()
    if row is None or row[0] != device_id or row[1] is not None or row[2]:
        why = "unknown" if row is None else "used" if row[1] else "expired" if row[2] else "device"
        log.warning("provision refused device=%s reason=%s", device_id, why)
        raise BadClaim("invalid, used or expired claim token for this device")
    school_id, site_key, zone, mode = str(row[3]), bytes(row[4]), str(row[5]), str(row[6])
    tz_offset = boardsetup.tz_offset_min(zone)  # before the token is used: a bad zone spends none
    conn.execute(
        "UPDATE device_claim_tokens SET used_at = now() WHERE token_hash = %s", (_hash(token),)
    )
    password = secrets.token_urlsafe(24)
    username = board_username(device_id)
    old = conn.execute(
        "SELECT mqtt_username, revoked_at IS NULL FROM device_credentials WHERE device_id = %s"
        " FOR UPDATE",
        (device_id,),
    ).fetchone()
    ack_key = new_ack_key()  # a new board (or flash) gets a new key (protocol.md "Ack")
    conn.execute(
        "INSERT INTO device_credentials (device_id, mqtt_username, broker_acl, ack_key)"
        " VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (device_id) DO UPDATE SET mqtt_username = excluded.mqtt_username,"
        " broker_acl = excluded.broker_acl, provisioned_at = now(), revoked_at = NULL,"
        " ack_key = excluded.ack_key",
        (device_id, username, broker.enforced, ack_key),
    )
    device_actor = Principal(user_id=None, email=f"device:{device_id}", role="technician")
    store.audit(
        conn, device_actor, "create", "device_credentials", device_id, None,
        {"device_id": device_id, "mqtt_username": username, "broker_acl": broker.enforced},
        school_id,
    )  # fmt: skip
    # last: a failure (unreachable, refused, NotABoardAccount) rolls everything above back
    created = broker.provision(device_id, password)
    assert created == username, (created, username)
    if old is not None and old[1] and old[0] != username:
        # provisioned before D24-A under the bare device id: that account must stop working
        broker.disable(device_id, str(old[0]))
    log.info(
        "device provisioned device=%s user=%s broker_acl=%s", device_id, username, broker.enforced
    )
    host = settings.device_mqtt_host or settings.mqtt_host
    tls = settings.device_mqtt_tls
    port = settings.device_mqtt_port or (8883 if tls else settings.mqtt_port)  # 8883: MQTT/TLS
    return Credentials(
        device=device_id,
        school=school_id,
        site_key=site_key,
        username=username,
        password=password,
        host=host,
        port=port,
        prefix=settings.topic_prefix,
        broker_acl=broker.enforced,
        ack_key=ack_key,
        boot_floor=boot_floor(conn, device_id),
        tls=tls,
        ca_pem=settings.device_ca_pem if tls else None,
        server_hostname=(settings.device_mqtt_server_name or host) if tls else None,
        ntp=settings.device_ntp_servers,
        timezone=zone,
        tz_offset_min=tz_offset,
        mode=mode,
    )


def retired_school(conn: Conn, device_id: str) -> str | None:
    """The school that deleted ``device_id`` (migration 0016), or None when it was never
    deleted (or was registered again by that school)."""
    row = conn.execute(
        "SELECT school_id FROM retired_devices WHERE device_id = %s", (device_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def check_reusable(conn: Conn, device_id: str, school_id: str) -> None:
    """A deleted device id may be registered again by its own school only (D24-A): otherwise
    the old board, if it still had a way in, would report as the new school's device."""
    owner = retired_school(conn, device_id)
    if owner is not None and owner != school_id:
        raise Conflict(
            f"device id {device_id} belonged to a device another school deleted; device ids are "
            "not reused across schools: choose another id"
        )


def delete_device(
    conn: Conn, actor: Principal, broker: BrokerAccounts, device_id: str
) -> dict[str, Any]:
    """Delete a device that never sent an event, and lock its board out of the broker in the
    same request: the row goes (with its credentials and claim tokens; a tombstone stays in
    ``retired_devices``), then the broker account is disabled. A broker failure raises, and the
    request's transaction rolls the delete back (D24-A)."""
    if conn.execute("SELECT 1 FROM events WHERE device_id = %s LIMIT 1", (device_id,)).fetchone():
        raise Conflict(f"device {device_id} has events and cannot be deleted")
    creds = conn.execute(
        "SELECT mqtt_username FROM device_credentials WHERE device_id = %s AND revoked_at IS NULL"
        " FOR UPDATE",
        (device_id,),
    ).fetchone()
    before = store.delete(conn, actor, "devices", device_id)
    disabled = False
    if creds is not None:
        store.audit(
            conn, actor, "revoke", "device_credentials", device_id, None,
            {"device_id": device_id, "mqtt_username": creds[0], "reason": "device deleted"},
            str(before["school_id"]),
        )  # fmt: skip
        disabled = broker.disable(device_id, str(creds[0]))
    log.info(
        "device deleted device=%s credentials=%s broker_disabled=%s",
        device_id, creds is not None, disabled,
    )  # fmt: skip
    return {"device": device_id, "credentials_revoked": creds is not None}


def revoke_retired(
    conn: Conn, actor: Principal, broker: BrokerAccounts, device_id: str, school_id: str
) -> dict[str, Any]:
    """Revoke on a deleted device: its broker account was disabled when it was deleted (or, for
    a device deleted before D24-A, is disabled now); do it again, idempotently, and say so."""
    row = conn.execute(
        "SELECT mqtt_username FROM retired_devices WHERE device_id = %s FOR UPDATE",
        (device_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"device {device_id} not found")
    username = str(row[0]) if row[0] is not None else board_username(device_id)
    store.audit(
        conn, actor, "revoke", "device_credentials", device_id, None,
        {"device_id": device_id, "mqtt_username": username, "retired": True}, school_id,
    )  # fmt: skip
    broker.disable(device_id, username)
    return {
        "device": device_id, "credentials_revoked": row[0] is not None, "tokens_revoked": 0,
        "retired": True,
    }  # fmt: skip


def revoke(
    conn: Conn, actor: Principal, broker: BrokerAccounts, device_id: str, school_id: str
) -> dict[str, Any]:
    """Revoke the board's broker account and every unused claim token of the device."""
    creds = conn.execute(
        "UPDATE device_credentials SET revoked_at = now()"
        " WHERE device_id = %s AND revoked_at IS NULL RETURNING provisioned_at, mqtt_username",
        (device_id,),
    ).fetchone()
    tokens = conn.execute(
        "UPDATE device_claim_tokens SET expires_at = greatest(created_at + interval '1 ms', now())"
        " WHERE device_id = %s AND used_at IS NULL AND expires_at > now()",
        (device_id,),
    ).rowcount
    if creds is None and not tokens:
        raise Conflict(f"device {device_id} has no active credentials or claim tokens to revoke")
    store.audit(
        conn, actor, "revoke", "device_credentials", device_id, None,
        {"device_id": device_id, "credentials": creds is not None, "claim_tokens": tokens},
        school_id,
    )  # fmt: skip
    if creds is not None:
        broker.disable(device_id, str(creds[1]))
    return {
        "device": device_id, "credentials_revoked": creds is not None, "tokens_revoked": tokens,
        "retired": False,
    }  # fmt: skip
