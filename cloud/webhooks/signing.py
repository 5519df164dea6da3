"""How a webhook delivery is signed, and how a receiver checks it (docs/integrations.md).

``Qadam-Signature: v1=<hex HMAC-SHA256 over "<timestamp>.<body>">`` with the subscriber's
secret; ``Qadam-Timestamp`` is Unix seconds at the attempt, so a retry is signed anew and a
receiver refuses anything older than the replay window. ``Qadam-Webhook-Id`` is the same on
every attempt of one delivery: the receiver dedupes on it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ID_HEADER = "Qadam-Webhook-Id"
TIMESTAMP_HEADER = "Qadam-Timestamp"
SIGNATURE_HEADER = "Qadam-Signature"
SCHEME = "v1"
REPLAY_WINDOW_S = 300  # a receiver accepts a timestamp at most this far from its clock
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret: 32 random bytes, URL-safe text."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Qadam-Signature`` header's value."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(
    secret: str,
    header: str,
    timestamp: str,
    body: bytes,
    now: float,
    window_s: int = REPLAY_WINDOW_S,
) -> bool:
    """A receiver's check: a v1 signature that matches, a timestamp within the window."""
    try:
        t = int(timestamp)
    except ValueError:
        return False
    if abs(now - t) > window_s:
        return False
    expected = signature(secret, t, body)
    # a header may carry several signatures (during a secret rotation): any one matching is fine
    return any(hmac.compare_digest(expected, part.strip()) for part in header.split(","))
