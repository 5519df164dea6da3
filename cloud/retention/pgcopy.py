"""PostgreSQL's binary COPY format, read back to check an archive file: the signature, the header,
every tuple's fields and the trailer, counting tuples, while hashing the bytes. A file cut short,
with a bad header or bytes after the trailer is refused (``BadArchive``). Format: the PostgreSQL
manual, COPY, "Binary Format"."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
CHUNK = 1 << 20


class BadArchive(ValueError):
    """The file is not a complete binary COPY stream."""


@dataclass(frozen=True)
class Digest:
    sha256: str
    rows: int
    size: int


_I16 = struct.Struct("!h").unpack_from
_I32 = struct.Struct("!i").unpack_from
_HEADER = struct.Struct("!iI")


def _records(buf: bytes, pos: int, columns: int, rows: int) -> tuple[int, int, bool]:
    """Skip every whole record of ``buf`` from ``pos``: (new pos, rows, trailer reached).
    One tight loop per field with ``unpack_from`` (no slices): this parse is the archive's
    bottleneck (bench/retention.py)."""
    n = len(buf)
    while pos + 2 <= n:
        (fields,) = _I16(buf, pos)
        if fields == -1:
            return pos + 2, rows, True
        if fields != columns:
            raise BadArchive(f"record {rows + 1} has {fields} fields, expected {columns}")
        p = pos + 2
        for _ in range(fields):
            if p + 4 > n:
                return pos, rows, False
            (length,) = _I32(buf, p)
            if length < -1:
                raise BadArchive(f"record {rows + 1}: bad field length {length}")
            p += 4 + max(length, 0)
        if p > n:
            return pos, rows, False
        pos = p
        rows += 1
    return pos, rows, False


def read_back(path: Path, columns: int) -> Digest:
    """Parse the whole file; every tuple must have ``columns`` fields."""
    h = hashlib.sha256()
    size = rows = pos = 0
    buf = b""
    with path.open("rb") as f:
        header_done = done = False
        while not done:
            chunk = f.read(CHUNK)
            h.update(chunk)
            size += len(chunk)
            buf = buf[pos:] + chunk
            pos = 0
            if not header_done:
                if len(buf) < len(SIGNATURE) + 8 and chunk:
                    continue
                if buf[: len(SIGNATURE)] != SIGNATURE:
                    raise BadArchive("not a PostgreSQL binary COPY file (bad signature)")
                if len(buf) < len(SIGNATURE) + 8:
                    raise BadArchive("file ends inside the header")
                _flags, ext = _HEADER.unpack_from(buf, len(SIGNATURE))
                pos = len(SIGNATURE) + 8 + ext
                if pos > len(buf):  # PostgreSQL writes none; a long one is not ours
                    raise BadArchive(f"header extension of {ext} bytes")
                header_done = True
            pos, rows, done = _records(buf, pos, columns, rows)
            if not done and not chunk:
                raise BadArchive(f"file ends inside a record (after {rows} whole records)")
        extra = len(buf) - pos + len(f.read(1))
    if extra:
        raise BadArchive("bytes after the end-of-data trailer")
    return Digest(h.hexdigest(), rows, size)


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
