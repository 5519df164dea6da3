"""Authenticated acks and the boot floor (protocol.md "Ack", "Boot floor"; issue #13 items 6, 7).

At provisioning every board gets a random 32-byte ack key (``device_credentials.ack_key``,
migration 0020) in its device file. The cloud puts ``"mac"`` into every ack it sends such a board:
the first 16 bytes of HMAC-SHA256(key, b"DEVICE|BOOT|FIRST|LAST"), as 32 lowercase hex digits;
the boot floor command carries the mac of b"DEVICE|FLOOR". Device ids never contain ``|``
(``^[a-z0-9][a-z0-9-]{0,31}$``), so the two messages cannot be taken for one another. A board
without a key (provisioned before 0020, or a demo board without provisioning) gets acks without
a mac, as before.

Each ingest writer keeps the keys of its devices in memory for ``TTL_S`` (a re-provisioned board
gets its new key's acks at most that much later; until then it ignores the old key's acks and
re-sends). ``hmac.digest`` on the raw key measured 3.5 us per ack here (one-shot, OpenSSL's fast
path; a precomputed ``HMAC`` object's ``copy()`` costs the same), ~1 % of a core at the
~3,000 acks/s of a 100k events/s replay.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Iterable
from typing import Any

import psycopg

log = logging.getLogger("qadam.ingest.ackkeys")

KEY_BYTES = 32
MAC_BYTES = 16
TTL_S = 10.0


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _mac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")[:MAC_BYTES].hex().encode()


def ack_mac(key: bytes, device: str, boot: int, first: int, last: int) -> str:
    return _mac(key, b"%s|%d|%d|%d" % (device.encode(), boot, first, last)).decode()


def floor_mac(key: bytes, device: str, floor: int) -> str:
    return _mac(key, b"%s|%d" % (device.encode(), floor)).decode()


def signed_payload(payload: bytes, key: bytes | None, device: str, boot: int, first: int,
                   last: int) -> bytes:  # fmt: skip
    """An ack's JSON ``payload`` (ending in ``}``) with ``"mac"`` added when there is a key."""
    if key is None:
        return payload
    mac = _mac(key, b"%s|%d|%d|%d" % (device.encode(), boot, first, last))
    return payload[:-1] + b',"mac":"' + mac + b'"}'


_KEYS = (
    "SELECT k.device_id, c.ack_key FROM unnest(%s::text[]) AS k(device_id)"
    " LEFT JOIN device_credentials c ON c.device_id = k.device_id"
)


class AckKeys:
    """The ack keys of some devices, cached for ``ttl_s`` (one per ingest writer: no lock)."""

    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._keys: dict[str, tuple[float, bytes | None]] = {}

    def get(self, conn: psycopg.Connection[Any], devices: Iterable[str]) -> dict[str, bytes | None]:
        """device -> key (None: no key, unsigned acks) for ``devices``; one query for those not
        cached or expired. A database error keeps what is cached (unknown devices: no key; such
        a board ignores the ack and re-sends, nothing is lost)."""
        now = time.monotonic()
        keys = self._keys
        want = {d for d in devices if d not in keys or keys[d][0] <= now}
        if want:
            try:
                rows = conn.execute(_KEYS, (sorted(want),)).fetchall()
            except psycopg.Error as e:
                log.warning("ack keys not read error=%s", type(e).__name__)
                rows = []
            until = now + self.ttl_s
            for device, key in rows:
                keys[device] = (until, None if key is None else bytes(key))
        return {d: keys[d][1] if d in keys else None for d in devices}


def floor_command(key: bytes | None, device: str, floor: int) -> bytes:
    """The command (``{prefix}/v1/dev/{device}/cmd``, QoS 1, not retained) that makes a board
    persist a boot counter above ``floor`` and restart its boot in place (protocol.md "Boot
    floor"). Its id names the floor, so a re-delivery is answered, not run, again."""
    mac = b"" if key is None else b',"mac":"%s"' % floor_mac(key, device, floor).encode()
    return b'{"v":1,"id":"floor-%d","cmd":"floor","boot":%d%s}' % (floor, floor, mac)


def ack_key(conn: psycopg.Connection[Any], device: str) -> bytes | None:
    row = conn.execute(
        "SELECT ack_key FROM device_credentials WHERE device_id = %s", (device,)
    ).fetchone()
    return None if row is None or row[0] is None else bytes(row[0])


# A status whose boot equals the newest stored one is another life of the board (a re-flash that
# restarted the counter at the same number) when that boot's stored events ran longer than the
# board has been up now; the margin covers the status's rounding to whole seconds.
UPTIME_MARGIN_MS = 2_000


def floor_for(conn: psycopg.Connection[Any], device: str, boot: int, up_s: int | None) -> int:
    """The boot floor to tell a board that reports ``boot`` (and ``up_s`` seconds of uptime) in
    its status, or 0 when its boot is newer than everything stored. ``boot`` below the newest
    stored boot: a reused counter. Equal: reused only if that boot's stored events have a larger
    uptime than the board has now (a board reconnecting in the same boot is fine)."""
    floor = boot_floor(conn, device)
    if boot > floor:
        return 0
    if boot == floor:
        if up_s is None:
            return 0  # no uptime to compare: the ingest's identity check is the backstop
        row = conn.execute(
            "SELECT max(uptime_ms) FROM events WHERE device_id = %s AND boot = %s",
            (device, boot),
        ).fetchone()
        if row is None or row[0] is None or row[0] <= up_s * 1000 + UPTIME_MARGIN_MS:
            return 0
    return floor


def boot_floor(conn: psycopg.Connection[Any], device: str) -> int:
    """The newest boot the cloud holds events of for ``device`` (0: none). A board must start its
    boot counter above it (protocol.md "Boot floor")."""
    row = conn.execute("SELECT max(boot) FROM events WHERE device_id = %s", (device,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
