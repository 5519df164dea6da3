"""Webhook subscribers of a school and the hosts they may point at (migration 0046, D29-I).

A subscriber's URL is one our outbox worker will POST to, so it is checked like a push endpoint
(cloud/push/subscriptions.py): https only, no credentials or fragment, and its host must be on
the school's allowlist, which the district or platform admin keeps. Plain http is accepted only
for loopback hosts and only when the settings allow it (the tests' fake receiver).

Every change is audited in the caller's transaction; the secret never goes into the audit log
or any listing: it is returned once, when it is made.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Invalid, NotFound
from cloud.webhooks.signing import new_secret

Conn = psycopg.Connection[Any]
EVENTS = ("passage", "meal", "device_offline", "report_approved")
MAX_HOSTS = 50
MAX_PER_SCHOOL = 20
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOST_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})+$")
_COLUMNS = "id, school_id, url, events, created_at, rotated_at"


class Refused(Invalid):
    """Invalid, with a short code the console turns into a sentence in the user's language."""

    def __init__(self, field: str, msg: str, code: str) -> None:
        super().__init__(field, msg)
        self.code = code


def normalise_host(text: str) -> str:
    host = text.strip().lower().rstrip(".")
    if len(host) > 253 or not HOST_RE.match(host):
        raise Refused(
            "hosts", f"{text.strip()!r} is not a host name (e.g. hooks.example.kz)", "host_name"
        )
    return host


def hosts(conn: Conn, school_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT host FROM webhook_hosts WHERE school_id = %s ORDER BY host", (school_id,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def set_hosts(conn: Conn, actor: Principal, school_id: str, wanted: Sequence[str]) -> list[str]:
    """Replace the school's allowlist. Subscribers on a host taken off stay registered, but
    their deliveries fail (the handler checks the list again) until the host is back."""
    new = sorted({normalise_host(h) for h in wanted})
    if len(new) > MAX_HOSTS:
        raise Refused("hosts", f"at most {MAX_HOSTS} hosts per school", "hosts_many")
    old = hosts(conn, school_id)
    conn.execute(
        "DELETE FROM webhook_hosts WHERE school_id = %s AND NOT host = ANY(%s)", (school_id, new)
    )
    conn.execute(
        "INSERT INTO webhook_hosts (school_id, host, added_by)"
        " SELECT %s, h, %s FROM unnest(%s::text[]) AS h ON CONFLICT DO NOTHING",
        (school_id, actor.user_id, new),
    )
    store.audit(conn, actor, "update", "webhook_hosts", school_id, {"hosts": old},
                {"hosts": new}, school_id)  # fmt: skip
    return new


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_url(url: str, allowed: Sequence[str], allow_http_loopback: bool = False) -> str:
    """The URL if our workers may POST to it, else Invalid saying why."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as e:
        raise Refused("url", f"url is not a valid URL: {e}", "url_bad") from e
    if parts.username or parts.password or parts.fragment:
        raise Refused("url", "url must not carry credentials or a fragment", "url_bad")
    http_ok = parts.scheme == "http" and allow_http_loopback and _loopback(host)
    if parts.scheme != "https" and not http_ok:
        raise Refused("url", "url must be an https URL", "url_https")
    if not host:
        raise Refused("url", "url has no host", "url_bad")
    if host not in allowed:
        raise Refused(
            "url",
            f"host {host!r} is not on this school's webhook allowlist; the district or platform"
            " administrator adds it",
            "url_host",
        )
    return url.strip()


def check_events(events: Sequence[str]) -> list[str]:
    chosen = sorted(set(events))
    if not chosen:
        raise Refused("events", "choose at least one event kind", "events")
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown:
        raise Refused("events", f"unknown event kinds {unknown}; known: {list(EVENTS)}", "events")
    return chosen


def register(
    conn: Conn,
    actor: Principal,
    school_id: str,
    url: str,
    events: Sequence[str],
    allow_http_loopback: bool = False,
) -> dict[str, Any]:
    """A new subscriber; the answer holds its secret (this once)."""
    url = check_url(url, hosts(conn, school_id), allow_http_loopback)
    chosen = check_events(events)
    count = conn.execute(
        "SELECT count(*) FROM webhook_subscriptions WHERE school_id = %s", (school_id,)
    ).fetchone()
    if count is not None and count[0] >= MAX_PER_SCHOOL:
        raise Refused(
            "url", f"a school has at most {MAX_PER_SCHOOL} webhook subscribers", "too_many"
        )
    secret = new_secret()
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO webhook_subscriptions (school_id, url, events, secret, created_by)"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (school_id, url, chosen, secret, actor.user_id),
        ).fetchone()
    assert row is not None
    store.audit(conn, actor, "create", "webhook_subscriptions", row["id"], None,
                {"school_id": school_id, "url": url, "events": chosen}, school_id)  # fmt: skip
    return {**row, "secret": secret}


# per subscriber: deliveries done, waiting (incl. retrying), dead, and the newest dead letter's
# error (outbox_webhook_subscriber_idx, migration 0047)
_LISTING = f"""
SELECT {", ".join("s." + c.strip() for c in _COLUMNS.split(","))},
       count(o.id) FILTER (WHERE o.delivered_at IS NOT NULL) AS delivered,
       count(o.id) FILTER (WHERE o.delivered_at IS NULL AND o.dead_at IS NULL) AS waiting,
       count(o.id) FILTER (WHERE o.dead_at IS NOT NULL) AS failed,
       (array_agg(o.last_error ORDER BY o.dead_at DESC)
            FILTER (WHERE o.dead_at IS NOT NULL))[1] AS last_error
FROM webhook_subscriptions s
LEFT JOIN outbox o ON o.kind = 'webhook' AND (o.payload->>'subscription_id')::int8 = s.id
WHERE s.school_id = %s
GROUP BY s.id ORDER BY s.id"""


def listing(conn: Conn, school_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LISTING, (school_id,)).fetchall()


def school_of(conn: Conn, webhook_id: int) -> str:
    row = conn.execute(
        "SELECT school_id FROM webhook_subscriptions WHERE id = %s", (webhook_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"webhook {webhook_id} not found")
    return str(row[0])


def delete(conn: Conn, actor: Principal, webhook_id: int) -> None:
    """Remove a subscriber. Its undelivered rows become dead letters when claimed."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"DELETE FROM webhook_subscriptions WHERE id = %s RETURNING {_COLUMNS}",
            (webhook_id,),
        ).fetchone()
    if row is None:
        raise NotFound(f"webhook {webhook_id} not found")
    store.audit(conn, actor, "delete", "webhook_subscriptions", webhook_id,
                {"school_id": row["school_id"], "url": row["url"], "events": row["events"]},
                None, row["school_id"])  # fmt: skip


def rotate(conn: Conn, actor: Principal, webhook_id: int) -> dict[str, Any]:
    """A new secret, at once: deliveries from now on are signed with it (shown this once)."""
    secret = new_secret()
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "UPDATE webhook_subscriptions SET secret = %s, rotated_at = now() WHERE id = %s"
            f" RETURNING {_COLUMNS}",
            (secret, webhook_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"webhook {webhook_id} not found")
    store.audit(conn, actor, "update", "webhook_subscriptions", webhook_id, None,
                {"secret": "rotated"}, row["school_id"])  # fmt: skip
    return {**row, "secret": secret}
