"""Whitelist file, format 1 (protocol.md, "Whitelist file"): a 32-byte header, then 12-byte
records sorted by card key."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

from cloud.domain.cardkey import is_card_key

MAGIC = b"QWL1"
FORMAT = 1
RECORD_SIZE = 12
HEADER = struct.Struct("<4sHHIII12x")  # magic, format, record size, version, count, crc32
RECORD = struct.Struct("<8sBBH")  # key, attributes, access profile, allergen mask
KINDS = {"student": 1, "staff": 2}

assert HEADER.size == 32 and RECORD.size == RECORD_SIZE

Entry = tuple[
    str, str, int, int, int
]  # card_key_hex, kind, meal_category, access_profile, allergens


def build_whitelist(version: int, entries: Iterable[Entry]) -> bytes:
    """Serialise ``entries`` (card_key_hex, kind 'student'|'staff', meal_category 0..3,
    access_profile 0..255, allergen_mask 0..65535) as a format-1 whitelist.

    Raises ValueError on an invalid field or a duplicate card key."""
    if not isinstance(version, int) or not 0 <= version <= 0xFFFFFFFF:
        raise ValueError(f"version {version!r} out of range 0..2^32-1")
    records: dict[bytes, bytes] = {}
    for entry in entries:
        key_hex, kind, meal, profile, allergens = entry
        if not is_card_key(key_hex):
            raise ValueError(f"card key {key_hex!r} is not 16 lowercase hex digits")
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {sorted(KINDS)}")
        if not isinstance(meal, int) or not 0 <= meal <= 3:
            raise ValueError(f"meal category {meal!r} out of range 0..3")
        if not isinstance(profile, int) or not 0 <= profile <= 0xFF:
            raise ValueError(f"access profile {profile!r} out of range 0..255")
        if not isinstance(allergens, int) or not 0 <= allergens <= 0xFFFF:
            raise ValueError(f"allergen mask {allergens!r} out of range 0..65535")
        key = bytes.fromhex(key_hex)
        if key in records:
            raise ValueError(f"duplicate card key {key_hex}")
        records[key] = RECORD.pack(key, KINDS[kind] | (meal << 2), profile, allergens)
    body = b"".join(records[k] for k in sorted(records))
    header = HEADER.pack(MAGIC, FORMAT, RECORD_SIZE, version, len(records), zlib.crc32(body))
    return header + body
