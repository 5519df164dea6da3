"""PostgreSQL's binary COPY format, read back to check an archive file: the signature, the header,
every tuple's fields and the trailer, counting tuples, while hashing the bytes. A file cut short,
with a bad header or bytes after the trailer is refused (``BadArchive``). Format: the PostgreSQL
manual, COPY, "Binary Format"."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
CHUNK = 1 << 20


class BadArchive(ValueError):
    """The file is not a complete binary COPY stream."""


@dataclass(frozen=True)
class Digest:
    sha256: str
    rows: int
    size: int


class _Hashing:
    """Reads exactly n bytes at a time from a file, hashing everything read."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0
        self.buf = b""
        self.pos = 0

    def take(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            more = self.f.read(max(CHUNK, n))
            if not more:
                raise BadArchive(
                    f"file ends inside a record (at byte {self.size - len(self.buf) + self.pos})"
                )
            self.h.update(more)
            self.size += len(more)
            self.buf = self.buf[self.pos :] + more
            self.pos = 0
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def at_end(self) -> bool:
        if self.pos < len(self.buf):
            return False
        more = self.f.read(1)
        if more:
            self.h.update(more)
            self.size += len(more)
            self.buf, self.pos = more, 0
            return False
        return True


def read_back(path: Path, columns: int) -> Digest:
    """Parse the whole file; every tuple must have ``columns`` fields."""
    with path.open("rb") as f:
        r = _Hashing(f)
        if r.take(len(SIGNATURE)) != SIGNATURE:
            raise BadArchive("not a PostgreSQL binary COPY file (bad signature)")
        _flags, ext = struct.unpack("!iI", r.take(8))
        r.take(ext)
        rows = 0
        unpack_len = struct.Struct("!i").unpack
        while True:
            (fields,) = struct.unpack("!h", r.take(2))
            if fields == -1:
                break
            if fields != columns:
                raise BadArchive(f"record {rows + 1} has {fields} fields, expected {columns}")
            for _ in range(fields):
                (length,) = unpack_len(r.take(4))
                if length > 0:
                    r.take(length)
                elif length < -1:
                    raise BadArchive(f"record {rows + 1}: bad field length {length}")
            rows += 1
        if not r.at_end():
            raise BadArchive("bytes after the end-of-data trailer")
        return Digest(r.h.hexdigest(), rows, r.size)
