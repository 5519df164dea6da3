"""A board's retained status document (protocol.md "Status") as the cloud's workers read it:
the whitelist push, the balance push and the command pusher each take what they need from it."""

from __future__ import annotations

import json
from typing import Any

STATUS_MAX = 4096  # bytes; protocol.md status documents are ~200 bytes


def status_doc(payload: bytes) -> dict[str, Any] | None:
    """A v1 status with a boolean ``online`` (the last will says false), or None if the payload
    is not one (too large, not JSON, another version)."""
    if not payload or len(payload) > STATUS_MAX:
        return None
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("online"), bool):
        return None
    return doc
