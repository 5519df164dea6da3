"""Push subscriptions: checking what a browser hands us, storing it, finding who gets a message.

The endpoint is a URL the cloud will POST to, given by a user: it is checked against the push
services we know (``push_endpoint_hosts``), so a subscription cannot aim our workers at an
internal address. Plain http is accepted only for loopback hosts and only when the settings
allow it (the tests' fake push service).

Subscribing and unsubscribing are changes made through the API, so they are written to the
audit log by ``cloud.domain.store.audit`` (D8), in the caller's transaction. The audit row names
the push service's host, not the endpoint URL: the URL is a per-browser address at the push
service and, with the keys, what lets anyone reach that browser.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
from cryptography.hazmat.primitives.asymmetric import ec
from psycopg.rows import dict_row

from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Invalid
from cloud.push.webpush import Subscription, b64url_decode

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class EndpointPolicy:
    hosts: Sequence[str]  # a host matches itself or any subdomain
    allow_http_loopback: bool = False


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, policy: EndpointPolicy) -> str:
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if parts.username or parts.password or parts.fragment:
        raise Invalid("endpoint", "endpoint must not carry credentials or a fragment")
    if parts.scheme == "http" and policy.allow_http_loopback and _loopback(host):
        return endpoint
    if parts.scheme != "https":
        raise Invalid("endpoint", "endpoint must be an https URL of a push service")
    if not any(host == h or host.endswith("." + h) for h in policy.hosts):
        raise Invalid("endpoint", f"endpoint host {host!r} is not a known push service")
    return endpoint


def decode_keys(p256dh: str, auth: str) -> tuple[bytes, bytes]:
    """Base64url keys of a PushSubscription -> (65-byte P-256 point, 16-byte secret)."""
    try:
        point = b64url_decode(p256dh)
        secret = b64url_decode(auth)
    except ValueError as exc:
        raise Invalid("keys", "keys must be base64url") from exc
    if len(point) != 65 or point[0] != 4:
        raise Invalid("keys.p256dh", "p256dh must be an uncompressed P-256 point (65 bytes)")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise Invalid("keys.p256dh", "p256dh is not a point on the P-256 curve") from exc
    if len(secret) != 16:
        raise Invalid("keys.auth", "auth must be 16 bytes")
    return point, secret


_COLUMNS = "id, user_id, endpoint, lang, created_at, last_ok_at"


def _audit_doc(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    host = urlsplit(str(row["endpoint"])).hostname or ""
    return {"id": row["id"], "user_id": row["user_id"], "push_service": host, "lang": row["lang"]}


def _audit(
    conn: Conn,
    actor: Principal,
    action: str,
    sub_id: int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    store.audit(
        conn, actor, action, "push_subscriptions", sub_id, _audit_doc(before), _audit_doc(after),
        school_id=actor.school_id,  # a school admin's own subscription shows in their school's log
    )  # fmt: skip


def _by(conn: Conn, column: str, value: object) -> dict[str, Any] | None:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            f"SELECT {_COLUMNS} FROM push_subscriptions WHERE {column} = %s FOR UPDATE",
            (value,),
        )
        .fetchone()
    )


def upsert(
    conn: Conn, actor: Principal, endpoint: str, p256dh: bytes, auth: bytes, lang: str
) -> dict[str, Any]:
    """Store a subscription of ``actor``. The same endpoint again (the browser re-subscribed,
    or someone else logged in on it) replaces the row: the endpoint now belongs to the actor.
    Audited as ``create`` or, for a replaced row, ``update`` (with the row before)."""
    assert actor.user_id is not None
    before = _by(conn, "endpoint", endpoint)
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, lang)"
            " VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (endpoint) DO UPDATE SET user_id = EXCLUDED.user_id,"
            " p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth, lang = EXCLUDED.lang,"
            " created_at = now(), last_ok_at = NULL, gone_at = NULL"
            f" RETURNING {_COLUMNS}",
            (actor.user_id, endpoint, p256dh, auth, lang),
        )
        .fetchone()
    )
    assert row is not None
    _audit(conn, actor, "create" if before is None else "update", row["id"], before, row)
    return row


def list_for_user(conn: Conn, user_id: int) -> list[dict[str, Any]]:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            f"SELECT {_COLUMNS} FROM push_subscriptions WHERE user_id = %s AND gone_at IS NULL"
            " ORDER BY id",
            (user_id,),
        )
        .fetchall()
    )


def delete_own(conn: Conn, actor: Principal, sub_id: int) -> bool:
    """Delete the actor's own subscription ``sub_id``; False when there is none (or it is
    someone else's). Audited."""
    before = _by(conn, "id", sub_id)
    if before is None or before["user_id"] != actor.user_id:
        return False
    conn.execute("DELETE FROM push_subscriptions WHERE id = %s", (sub_id,))
    _audit(conn, actor, "delete", sub_id, before, None)
    return True


def for_recipients(conn: Conn, user_ids: Sequence[int], key: str) -> list[tuple[Subscription, str]]:
    """Live subscriptions of active ``user_ids`` that have not had message ``key`` yet, with
    each subscriber's language."""
    rows = conn.execute(
        "SELECT s.id, s.endpoint, s.p256dh, s.auth, s.lang FROM push_subscriptions s"
        " JOIN users u ON u.id = s.user_id AND u.active"
        " WHERE s.user_id = ANY(%s) AND s.gone_at IS NULL AND NOT EXISTS ("
        "   SELECT 1 FROM push_deliveries d"
        "   WHERE d.idempotency_key = %s AND d.subscription_id = s.id)"
        " ORDER BY s.id",
        (list(user_ids), key),
    ).fetchall()
    return [(Subscription(r[0], r[1], bytes(r[2]), bytes(r[3])), r[4]) for r in rows]


def record(conn: Conn, key: str, sub_id: int, status: int, gone: bool) -> None:
    conn.execute(
        "INSERT INTO push_deliveries (idempotency_key, subscription_id, status) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (key, sub_id, status),
    )
    if gone:
        conn.execute(
            "UPDATE push_subscriptions SET gone_at = now() WHERE id = %s AND gone_at IS NULL",
            (sub_id,),
        )
    elif status < 300:
        conn.execute("UPDATE push_subscriptions SET last_ok_at = now() WHERE id = %s", (sub_id,))
