"""Keyset pagination of ``GET /api/v1/events``: an opaque cursor naming the last event of a page.

The next page is the events after it in the list's order (occurred_at DESC, seq DESC,
device_id, boot DESC), found from the indexes instead of skipping ``offset`` rows: across schools
each school reads only its next ``limit`` (D23), so a page deep into a long list costs what the
first one does.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import sql

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DEVICE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_INT8_MAX = 2**63 - 1
_MAX_LEN = 200

# After the cursor in the list's order; the second part lets the time index range start there.
AFTER = sql.SQL(
    "(e.occurred_at < %(c_t)s OR (e.occurred_at = %(c_t)s AND (e.seq < %(c_seq)s"
    " OR (e.seq = %(c_seq)s AND (e.device_id > %(c_dev)s"
    " OR (e.device_id = %(c_dev)s AND e.boot < %(c_boot)s))))))"
    " AND e.occurred_at <= %(c_t)s"
)


@dataclass(frozen=True, slots=True)
class Cursor:
    occurred_at: datetime
    seq: int
    device: str
    boot: int

    def encode(self) -> str:
        us = (self.occurred_at - _EPOCH) // timedelta(microseconds=1)
        text = f"{us}.{self.seq}.{self.boot}.{self.device}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def params(self) -> dict[str, object]:
        return {"c_t": self.occurred_at, "c_seq": self.seq, "c_dev": self.device,
                "c_boot": self.boot}  # fmt: skip


def decode(value: str) -> Cursor:
    """The cursor a page returned as ``next_cursor``; ValueError if ``value`` is not one."""
    if len(value) > _MAX_LEN:
        raise ValueError("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        text = raw.decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor of this API") from None
    parts = text.split(".", 3)
    if len(parts) != 4 or not all(p.isascii() and p.lstrip("-").isdigit() for p in parts[:3]):
        raise ValueError("not a cursor of this API")
    us, seq, boot = (int(p) for p in parts[:3])
    device = parts[3]
    if not (1 <= seq <= _INT8_MAX and 0 <= boot <= _INT8_MAX and _DEVICE.fullmatch(device)):
        raise ValueError("not a cursor of this API")
    try:
        occurred_at = _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        raise ValueError("cursor time out of range") from None
    return Cursor(occurred_at, seq, device, boot)
