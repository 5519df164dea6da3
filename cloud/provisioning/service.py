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
from cloud.domain.errors import Conflict, DomainError
from cloud.provisioning.dynsec import BrokerAccounts
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
    token = secrets.token_urlsafe(32)
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


def provision(
    conn: Conn, settings: Settings, broker: BrokerAccounts, device_id: str, token: str
) -> Credentials:
    """Use the claim token (once) and give the board its broker account."""
    row = conn.execute(
        "SELECT t.device_id, t.used_at, t.expires_at <= now() AS expired, d.school_id, s.site_key"
        " FROM device_claim_tokens t JOIN devices d ON d.id = t.device_id"
        " JOIN schools s ON s.id = d.school_id"
        " WHERE t.token_hash = %s FOR UPDATE OF t",
        (_hash(token),),
    ).fetchone()
    if row is None or row[0] != device_id or row[1] is not None or row[2]:
        why = "unknown" if row is None else "used" if row[1] else "expired" if row[2] else "device"
        log.warning("provision refused device=%s reason=%s", device_id, why)
        raise BadClaim("invalid, used or expired claim token for this device")
    school_id, site_key = str(row[3]), bytes(row[4])
    conn.execute(
        "UPDATE device_claim_tokens SET used_at = now() WHERE token_hash = %s", (_hash(token),)
    )
    password = secrets.token_urlsafe(24)
    conn.execute(
        "INSERT INTO device_credentials (device_id, mqtt_username, broker_acl) VALUES (%s, %s, %s)"
        " ON CONFLICT (device_id) DO UPDATE SET mqtt_username = excluded.mqtt_username,"
        " broker_acl = excluded.broker_acl, provisioned_at = now(), revoked_at = NULL",
        (device_id, device_id, broker.enforced),
    )
    device_actor = Principal(user_id=None, email=f"device:{device_id}", role="technician")
    store.audit(
        conn, device_actor, "create", "device_credentials", device_id, None,
        {"device_id": device_id, "broker_acl": broker.enforced}, school_id,
    )  # fmt: skip
    broker.provision(device_id, password)  # last: a failure rolls everything above back
    log.info("device provisioned device=%s broker_acl=%s", device_id, broker.enforced)
    return Credentials(
        device=device_id,
        school=school_id,
        site_key=site_key,
        username=device_id,
        password=password,
        host=settings.device_mqtt_host or settings.mqtt_host,
        port=settings.device_mqtt_port or settings.mqtt_port,
        prefix=settings.topic_prefix,
        broker_acl=broker.enforced,
    )


def revoke(
    conn: Conn, actor: Principal, broker: BrokerAccounts, device_id: str, school_id: str
) -> dict[str, Any]:
    """Revoke the board's broker account and every unused claim token of the device."""
    creds = conn.execute(
        "UPDATE device_credentials SET revoked_at = now()"
        " WHERE device_id = %s AND revoked_at IS NULL RETURNING provisioned_at",
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
        broker.disable(device_id)
    return {"device": device_id, "credentials_revoked": creds is not None, "tokens_revoked": tokens}
