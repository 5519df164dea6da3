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
    return for_recipients_many(conn, [(key, user_ids)])[0]


def for_recipients_many(
    conn: Conn, wanted: Sequence[tuple[str, Sequence[int]]]
) -> list[list[tuple[Subscription, str]]]:
    """:func:`for_recipients` for many messages ``(key, user_ids)`` with one query."""
    idx: list[int] = []
    users: list[int] = []
    keys: list[str] = []
    for i, (key, user_ids) in enumerate(wanted):
        for u in user_ids:
            idx.append(i)
            users.append(u)
            keys.append(key)
    out: list[list[tuple[Subscription, str]]] = [[] for _ in wanted]
    if not idx:
        return out
    rows = conn.execute(
        "SELECT DISTINCT r.idx, s.id, s.endpoint, s.p256dh, s.auth, s.lang"
        " FROM unnest(%s::int[], %s::bigint[], %s::text[]) AS r(idx, user_id, key)"
        " JOIN push_subscriptions s ON s.user_id = r.user_id AND s.gone_at IS NULL"
        " JOIN users u ON u.id = s.user_id AND u.active"
        " WHERE NOT EXISTS (SELECT 1 FROM push_deliveries d"
        "   WHERE d.idempotency_key = r.key AND d.subscription_id = s.id)"
        " ORDER BY r.idx, s.id",
        (idx, users, keys),
    ).fetchall()
    for i, sid, endpoint, p256dh, auth, lang in rows:
        out[i].append((Subscription(sid, endpoint, bytes(p256dh), bytes(auth)), lang))
    return out


def record(conn: Conn, key: str, sub_id: int, status: int, gone: bool) -> None:
    record_many(conn, [(key, sub_id, status, gone)])


def record_many(conn: Conn, outcomes: Sequence[tuple[str, int, int, bool]]) -> None:
    """Remember final answers ``(key, subscription, status, gone)``: the message is not sent to
    that subscription again; 404/410 retire the subscription; a success dates it. Run it in one
    transaction for a batch (one commit instead of three per message)."""
    if not outcomes:
        return
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO push_deliveries (idempotency_key, subscription_id, status)"
            " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::int[]) ON CONFLICT DO NOTHING",
            ([o[0] for o in outcomes], [o[1] for o in outcomes], [o[2] for o in outcomes]),
        )
        gone = sorted({o[1] for o in outcomes if o[3]})
        if gone:
            cur.execute(
                "UPDATE push_subscriptions SET gone_at = now()"
                " WHERE id = ANY(%s) AND gone_at IS NULL",
                (gone,),
            )
        ok = sorted({o[1] for o in outcomes if not o[3] and o[2] < 300})
        if ok:
            cur.execute(
                "UPDATE push_subscriptions SET last_ok_at = now() WHERE id = ANY(%s)", (ok,)
            )
