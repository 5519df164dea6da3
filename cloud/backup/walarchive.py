"""The WAL archive that deploy/backup/archive-wal.sh fills: one ``NAME.gz`` per finished WAL
segment (and per timeline history file). This module reads it back: segment names, and the walk
along a chain of segments that finds a hole or a damaged file before a restore needs it (D29-A).

A file's modification time is when it was archived: the walk uses it to know when it has gone
past a point in time (a segment archived after T holds everything written up to T)."""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

SEGMENT_NAME = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")


class BackupError(Exception):
    """A backup or restore cannot go on; the message says what to look at."""


@dataclass(frozen=True, order=True)
class Segment:
    """A WAL segment: timeline, then its place in the WAL (PostgreSQL's file name split up)."""

    timeline: int
    log: int
    seg: int

    @classmethod
    def parse(cls, name: str) -> Segment:
        m = SEGMENT_NAME.match(name)
        if not m:
            raise BackupError(f"{name!r} is not a WAL segment name")
        return cls(int(m[1], 16), int(m[2], 16), int(m[3], 16))

    @property
    def name(self) -> str:
        return f"{self.timeline:08X}{self.log:08X}{self.seg:08X}"

    def next(self, segment_size: int) -> Segment:
        # a "log" holds 4 GiB of WAL: 256 segments of 16 MiB, 4096 of 1 MiB
        per_log = 0x1_0000_0000 // segment_size
        if self.seg + 1 < per_log:
            return Segment(self.timeline, self.log, self.seg + 1)
        return Segment(self.timeline, self.log + 1, 0)


def segment_path(archive: Path, segment: Segment) -> Path:
    return archive / f"{segment.name}.gz"


def archived_segments(archive: Path) -> dict[Segment, Path]:
    """Every segment file in the archive (history files and partial copies left out)."""
    found = {}
    for path in archive.glob("*.gz"):
        stem = path.name.removesuffix(".gz")
        if SEGMENT_NAME.match(stem):
            found[Segment.parse(stem)] = path
    return found


def read_segment(path: Path, segment_size: int | None = None) -> bytes:
    """The segment's bytes, checked by gzip's CRC-32 (and its length, when known)."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"WAL segment {path.name} in the archive is damaged ({exc})") from exc
    if segment_size is not None and len(data) != segment_size:
        raise BackupError(
            f"WAL segment {path.name} in the archive is damaged "
            f"({len(data)} bytes, a segment has {segment_size})"
        )
    return data


@dataclass(frozen=True)
class Chain:
    """The result of a walk: the segments read and checked, first to last."""

    first: Segment
    last: Segment
    count: int
    last_archived_at: float  # the last segment's archive time (Unix seconds)
    passed_target: bool  # a segment archived after the target time was reached


def walk(archive: Path, start: Segment, segment_size: int, until: float | None = None) -> Chain:
    """Read every segment from ``start`` on, in WAL order, on ``start``'s timeline.

    With ``until`` (a Unix time), stop after the first segment archived after it: the chain is
    then long enough to replay to that time, and a hole or damage before it is an error. Without
    it, walk to the end of the archive: any hole (a later segment exists) or damage is an error.
    """
    present = archived_segments(archive)
    newest = max((s for s in present if s.timeline == start.timeline), default=None)
    seg, count, last, last_time = start, 0, None, 0.0
    while True:
        path = present.get(seg)
        if path is None:
            if last is None:
                raise BackupError(
                    f"WAL segment {seg.name} (the base backup's first) is not in the archive "
                    f"{archive}: the archive is not the one this backup was made with, or WAL "
                    "archiving was off (check archive_mode and pg_stat_archiver)"
                )
            if newest is not None and seg < newest:
                raise BackupError(
                    f"WAL segment {seg.name} is missing from the archive {archive} (a hole: "
                    f"{last.name} and later {newest.name} are there); WAL after the hole "
                    "cannot be replayed"
                )
            if until is not None:
                raise BackupError(
                    f"the archive {archive} ends with WAL segment {last.name}, archived at "
                    f"{_utc(last_time)}, before the target time {_utc(until)}: the WAL up to "
                    "the target is not archived yet (SELECT pg_switch_wal() on the server, "
                    "or choose an earlier time)"
                )
            break
        read_segment(path, segment_size)
        last, count = seg, count + 1
        last_time = path.stat().st_mtime
        if until is not None and last_time > until:
            break
        seg = seg.next(segment_size)
    return Chain(start, last, count, last_time, until is not None and last_time > until)


def _utc(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
