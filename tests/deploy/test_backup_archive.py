"""The WAL archive's pieces on their own (D29-A): archive-wal.sh's answers to PostgreSQL (a
retry of the same segment is fine, a different segment of the same name is refused and kept),
restore-wal.sh's, segment arithmetic, and the retention that drops old base backups and only
the WAL no kept backup needs."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest

from cloud.backup.base import list_backups, prune
from cloud.backup.walarchive import BackupError, Segment, walk

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = str(REPO / "deploy/backup/archive-wal.sh")
RESTORE = str(REPO / "deploy/backup/restore-wal.sh")
NAME = "000000010000000000000003"
SIZE = 1 << 20


def _segment(tmp_path: Path, fill: bytes) -> Path:
    src = tmp_path / "pg_wal" / NAME
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(fill * 512 + bytes(SIZE - 512 * len(fill)))
    return src


def test_archiving_stores_gzip_and_refuses_a_different_segment_of_the_same_name(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "wal"
    archive.mkdir()
    src = _segment(tmp_path, b"a")
    r = subprocess.run([ARCHIVE, str(src), NAME, str(archive)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    stored = archive / f"{NAME}.gz"
    assert gzip.decompress(stored.read_bytes()) == src.read_bytes()
    assert [p.name for p in archive.iterdir()] == [f"{NAME}.gz"]  # no partial left
    # PostgreSQL retries a segment whose success it did not record: the same bytes are fine
    r = subprocess.run([ARCHIVE, str(src), NAME, str(archive)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    before = stored.read_bytes()
    other = _segment(tmp_path, b"b")  # another server's segment of the same name
    r = subprocess.run([ARCHIVE, str(other), NAME, str(archive)], capture_output=True, text=True)
    assert r.returncode == 1 and "exists with other content; not overwritten" in r.stderr
    assert stored.read_bytes() == before


def test_restoring_a_segment_missing_and_damaged(tmp_path: Path) -> None:
    archive = tmp_path / "wal"
    archive.mkdir()
    src = _segment(tmp_path, b"a")
    subprocess.run([ARCHIVE, str(src), NAME, str(archive)], check=True)
    out = tmp_path / "RECOVERYXLOG"
    r = subprocess.run([RESTORE, NAME, str(out), str(archive)], capture_output=True, text=True)
    assert r.returncode == 0 and out.read_bytes() == src.read_bytes()
    # a file the archive lacks: exit 1, quietly (PostgreSQL asks past the end on every restore)
    r = subprocess.run(
        [RESTORE, "00000002.history", str(out), str(archive)], capture_output=True, text=True
    )
    assert r.returncode == 1 and r.stderr == ""
    (archive / f"{NAME}.gz").write_bytes(b"\x1f\x8b not gzip")
    out.unlink()
    r = subprocess.run([RESTORE, NAME, str(out), str(archive)], capture_output=True, text=True)
    assert r.returncode == 1 and "is damaged" in r.stderr and not out.exists()


def test_segment_names_and_the_next_one() -> None:
    s = Segment.parse("0000000100000002000000FF")
    assert (s.timeline, s.log, s.seg) == (1, 2, 255)
    assert s.next(16 << 20).name == "000000010000000300000000"  # 256 segments of 16 MiB a log
    assert s.next(1 << 20).name == "000000010000000200000100"  # 4096 of 1 MiB
    with pytest.raises(BackupError, match="not a WAL segment name"):
        Segment.parse("00000002.history")


def _fake_backup(root: Path, stamp: str, start: str, finished: float) -> None:
    path = root / "base" / stamp
    (path / "data").mkdir(parents=True)
    meta = {
        "started_at": finished - 5,
        "finished_at": finished,
        "start_segment": start,
        "segment_size": SIZE,
    }
    (path / "backup.json").write_text(json.dumps(meta))


def _archive(root: Path, names: list[str]) -> None:
    (root / "wal").mkdir(exist_ok=True)
    for name in names:
        (root / "wal" / f"{name}.gz").write_bytes(gzip.compress(bytes(SIZE)))


def test_retention_keeps_the_newest_backups_and_the_wal_they_need(tmp_path: Path) -> None:
    _fake_backup(tmp_path, "20261201T023000Z", "000000010000000000000002", 1.0)
    _fake_backup(tmp_path, "20261202T023000Z", "000000010000000000000005", 2.0)
    _fake_backup(tmp_path, "20261203T023000Z", "000000020000000000000008", 3.0)
    segs = [f"0000000100000000000000{n:02X}" for n in range(2, 8)]
    _archive(tmp_path, [*segs, "000000020000000000000007", "000000020000000000000008"])
    (tmp_path / "wal" / "00000002.history.gz").write_bytes(gzip.compress(b"1\t0/7000000\n"))
    (tmp_path / "base" / ".20261204T023000Z.partial").mkdir()  # a run that died: not a backup
    assert [b.path.name for b in list_backups(tmp_path)] == [
        "20261201T023000Z",
        "20261202T023000Z",
        "20261203T023000Z",
    ]
    gone, removed = prune(tmp_path, keep=2)
    assert [p.name for p in gone] == ["20261201T023000Z"]
    assert removed == 3  # 02, 03, 04: before the oldest kept backup's start (05)
    left = sorted(p.name for p in (tmp_path / "wal").iterdir())
    assert left == sorted(
        [f"{n}.gz" for n in segs[3:]]
        + ["000000020000000000000007.gz", "000000020000000000000008.gz", "00000002.history.gz"]
    )
    with pytest.raises(BackupError, match="at least 1"):
        prune(tmp_path, keep=0)


def test_walk_finds_a_hole_and_a_wrong_length(tmp_path: Path) -> None:
    names = [f"0000000100000000000000{n:02X}" for n in (2, 3, 5)]
    _archive(tmp_path, names)
    start = Segment.parse(names[0])
    with pytest.raises(BackupError, match=r"00000004 is missing from the archive .*\(a hole"):
        walk(tmp_path / "wal", start, SIZE)
    os.unlink(tmp_path / "wal" / f"{names[2]}.gz")
    chain = walk(tmp_path / "wal", start, SIZE)  # the end of the archive is no hole
    assert (chain.first.name, chain.last.name, chain.count) == (names[0], names[1], 2)
    with pytest.raises(BackupError, match="1048576 bytes, a segment has 2097152"):
        walk(tmp_path / "wal", start, 2 * SIZE)
    (tmp_path / "wal" / f"{names[0]}.gz").write_bytes(gzip.compress(bytes(1024)))
    with pytest.raises(BackupError, match="1024 bytes, a segment has 1048576"):
        walk(tmp_path / "wal", start, SIZE)
