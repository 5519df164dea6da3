"""Base backups: ``pg_basebackup`` into the backup directory, checked with ``pg_verifybackup``
before it counts, and the retention that drops old backups and the WAL only they needed (D29-A).

Layout of the backup directory (``/var/lib/qadam-backup`` on an installed machine)::

    wal/NAME.gz                  the WAL archive (deploy/backup/archive-wal.sh)
    base/20261207T023000Z/data   a plain-format copy of the cluster, with its backup_manifest
    base/20261207T023000Z/backup.json   when it was made and where its WAL starts
    base/.20261207T023000Z.partial      one being made (never restored from)
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cloud.backup.walarchive import BackupError, Segment, archived_segments

STAMP = re.compile(r"^\d{8}T\d{6}Z$")
START_WAL = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$", re.M)


def pg_bindir() -> Path:
    """The newest installed PostgreSQL's programs (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not found:
        raise BackupError("no PostgreSQL programs under /usr/lib/postgresql (give --pg-bindir)")
    return found[-1]


@dataclass(frozen=True)
class BaseBackup:
    path: Path  # base/<stamp>
    started_at: float
    finished_at: float  # after pg_basebackup returned: the copy is consistent by then
    start_segment: Segment
    segment_size: int

    @property
    def data(self) -> Path:
        return self.path / "data"

    @classmethod
    def load(cls, path: Path) -> BaseBackup:
        try:
            meta = json.loads((path / "backup.json").read_text())
            return cls(
                path,
                float(meta["started_at"]),
                float(meta["finished_at"]),
                Segment.parse(meta["start_segment"]),
                int(meta["segment_size"]),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise BackupError(f"{path} is not a complete base backup ({exc})") from exc


def list_backups(root: Path) -> list[BaseBackup]:
    """The finished base backups, oldest first."""
    base = root / "base"
    if not base.is_dir():
        return []
    return [BaseBackup.load(p) for p in sorted(base.iterdir()) if STAMP.match(p.name)]


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    # one backup or retention run at a time (a timer run and a hand-started one)
    with open(root / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BackupError(f"another backup is running in {root}") from exc
        yield


def take(root: Path, connection: Sequence[str] = (), bindir: Path | None = None) -> BaseBackup:
    """Make, verify and keep one base backup. ``connection``: pg_basebackup's connection options
    (``-h``, ``-p``, ``-U``, or ``-d CONNSTR``); none means libpq's defaults (the local socket)."""
    bindir = bindir or pg_bindir()
    (root / "base").mkdir(parents=True, exist_ok=True)
    with _locked(root):
        for stale in (root / "base").glob(".*.partial"):  # a run that died half-way
            shutil.rmtree(stale, ignore_errors=True)
        started = time.time()
        stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
        final = root / "base" / stamp
        if final.exists():
            raise BackupError(f"{final} exists already (two backups in one second)")
        partial = root / "base" / f".{stamp}.partial"
        data = partial / "data"
        # -X stream: the backup holds the WAL that makes it consistent, so it restores even if
        # the archive were lost; -c fast: an immediate checkpoint, not one spread over minutes
        _run(
            [
                str(bindir / "pg_basebackup"),
                *connection,
                "-D",
                str(data),
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-password",
                "--label",
                f"qadam {stamp}",
            ],
            "pg_basebackup",
        )
        finished = time.time()
        _run([str(bindir / "pg_verifybackup"), "-q", str(data)], "pg_verifybackup")
        label = (data / "backup_label").read_text()
        m = START_WAL.search(label)
        if not m:
            raise BackupError(f"{data}/backup_label names no START WAL LOCATION")
        start = m[1]
        size = (data / "pg_wal" / start).stat().st_size
        meta = {
            "started_at": started,
            "finished_at": finished,
            "start_segment": start,
            "segment_size": size,
            "finished": datetime.fromtimestamp(finished, UTC).isoformat(),
        }
        (partial / "backup.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.rename(partial, final)
        return BaseBackup.load(final)


def prune(root: Path, keep: int) -> tuple[list[Path], int]:
    """Keep the newest ``keep`` base backups; drop older ones and every archived segment older
    than the oldest kept backup's start (they replay nothing a kept backup needs). History files
    stay. Returns the backups removed and the number of segments removed."""
    if keep < 1:
        raise BackupError("--keep must be at least 1")
    with _locked(root):
        backups = list_backups(root)
        gone = [b.path for b in backups[:-keep]]
        for path in gone:
            shutil.rmtree(path)
        kept = backups[-keep:]
        if not kept:
            return gone, 0
        # pg_archivecleanup's rule: compare positions in the WAL, whatever the timeline
        oldest = (kept[0].start_segment.log, kept[0].start_segment.seg)
        removed = 0
        for seg, path in archived_segments(root / "wal").items():
            if (seg.log, seg.seg) < oldest:
                path.unlink()
                removed += 1
        return gone, removed


def verify(backup: BaseBackup, bindir: Path | None = None) -> None:
    """pg_verifybackup: every file against the manifest's checksum, and the WAL it includes."""
    _run(
        [str((bindir or pg_bindir()) / "pg_verifybackup"), "-q", str(backup.data)],
        "pg_verifybackup",
    )


def _run(argv: list[str], what: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        detail = (r.stderr or r.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: {detail[-1] if detail else f'exit {r.returncode}'}")
