"""Card keys (protocol.md "Card key", D3): SHA-256(site_key || uid)[0:8] as 16 lowercase hex."""

from __future__ import annotations

import hashlib
import re

CARD_KEY_RE = re.compile(r"[0-9a-f]{16}")


def card_key(site_key: bytes, uid: bytes) -> str:
    """The card key of ``uid`` at the school whose secret is ``site_key``."""
    if not isinstance(site_key, bytes | bytearray) or not isinstance(uid, bytes | bytearray):
        raise TypeError("site_key and uid must be bytes")
    if not uid:
        raise ValueError("uid is empty")
    return hashlib.sha256(bytes(site_key) + bytes(uid)).digest()[:8].hex()


def is_card_key(value: object) -> bool:
    return isinstance(value, str) and CARD_KEY_RE.fullmatch(value) is not None
