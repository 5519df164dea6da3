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
# with a sixth item: attribute bits 4-7 (alternative identification, D29-J): 0x10 QR allowed,
# 0x20 PIN allowed, 0x40 a person's record, 0x80 a PIN's record; 0 for a card
AltEntry = tuple[str, str, int, int, int, int]
ALT_FLAGS = 0xF0


def build_whitelist(version: int, entries: Iterable[Entry | AltEntry]) -> bytes:
    """Serialise ``entries`` (card_key_hex, kind 'student'|'staff', meal_category 0..3,
    access_profile 0..255, allergen_mask 0..65535) as a format-1 whitelist.

    Raises ValueError on an invalid field or a duplicate card key."""
    if not isinstance(version, int) or not 0 <= version <= 0xFFFFFFFF:
        raise ValueError(f"version {version!r} out of range 0..2^32-1")
    records: dict[bytes, bytes] = {}
    for entry in entries:
        key_hex, kind, meal, profile, allergens = entry[:5]
        flags = entry[5] if len(entry) > 5 else 0  # type: ignore[misc]
        if not isinstance(flags, int) or flags & ~ALT_FLAGS:
            raise ValueError(f"flags {flags!r} outside bits 4-7")
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
        records[key] = RECORD.pack(key, KINDS[kind] | (meal << 2) | flags, profile, allergens)
    body = b"".join(records[k] for k in sorted(records))
    header = HEADER.pack(MAGIC, FORMAT, RECORD_SIZE, version, len(records), zlib.crc32(body))
    return header + body


# --- updates over MQTT (protocol.md "Whitelist updates") ------------------------------------------
DELTA_MAGIC = b"QWD1"
DELTA_HEADER = struct.Struct("<4sHHIIIIII")  # magic, format, rsize, base, version, nrem, nadd,
#                                              result count, result record CRC
CHUNK_HEADER = struct.Struct("<4sBBHHHIIIII")  # magic, kind, flags, index, count, reserved,
#                                                version, base, total, crc32 of total, offset
CHUNK_MAGIC = b"QWC1"
SNAPSHOT, DELTA = 0, 1
CHUNK_DATA = 1024  # data bytes per chunk; boards accept up to 4096

assert DELTA_HEADER.size == 32 and CHUNK_HEADER.size == 32


def _records(wl: bytes) -> tuple[int, dict[bytes, bytes]]:
    magic, fmt, rsize, version, count, _crc = HEADER.unpack_from(wl, 0)
    if magic != MAGIC or fmt != FORMAT or rsize != RECORD_SIZE:
        raise ValueError("not a format-1 whitelist")
    if len(wl) != HEADER.size + count * RECORD_SIZE:
        raise ValueError("whitelist length does not match its count")
    recs = {}
    for i in range(count):
        off = HEADER.size + i * RECORD_SIZE
        recs[wl[off : off + 8]] = wl[off : off + RECORD_SIZE]
    return version, recs


def build_delta(old: bytes, new: bytes) -> bytes:
    """The delta that turns whitelist ``old`` into ``new`` on a board (both format-1 bytes, as
    :func:`build_whitelist` makes them): sorted keys to remove, sorted records to add or replace,
    and the count and record CRC the merged list must have."""
    base, a = _records(old)
    version, b = _records(new)
    _m, _f, _r, _v, count, crc = HEADER.unpack_from(new, 0)
    remove = sorted(k for k in a if k not in b)
    add = sorted(k for k in b if a.get(k) != b[k])
    head = DELTA_HEADER.pack(
        DELTA_MAGIC, FORMAT, RECORD_SIZE, base, version, len(remove), len(add), count, crc
    )
    return head + b"".join(remove) + b"".join(b[k] for k in add)


def chunk(
    data: bytes, version: int, *, base: int = 0, kind: int = SNAPSHOT, size: int = CHUNK_DATA
) -> list[bytes]:
    """Split a snapshot (``kind=SNAPSHOT``, a whole whitelist) or a delta (``kind=DELTA``, from
    :func:`build_delta`, ``base`` = the version it applies to) into the MQTT messages published,
    in order, QoS 1, to ``{prefix}/v1/dev/{device}/wl``."""
    if not 32 <= size <= 4096:
        raise ValueError("chunk size must be 32..4096")
    crc = zlib.crc32(data)
    count = max(1, -(-len(data) // size))
    return [
        CHUNK_HEADER.pack(
            CHUNK_MAGIC, kind, 0, i, count, 0, version, base, len(data), crc, i * size
        )
        + data[i * size : (i + 1) * size]
        for i in range(count)
    ]
