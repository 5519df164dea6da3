"""Restore to a point in time: the newest base backup finished before the target, copied into
an empty data directory, set to replay the archived WAL up to the target and then become a
primary (D29-A, docs/deploy.md "Backups and restore").

Everything that can be checked is checked before a byte is written: the target has a time zone,
a backup finished before it, the archive holds every segment from the backup's start to past the
target with none damaged, and the data directory is empty. PostgreSQL checks the rest while it
replays (each record's CRC; and it refuses to open a cluster whose replay ended before the
target: "recovery ended before configured recovery target was reached")."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cloud.backup.base import BaseBackup, list_backups
from cloud.backup.walarchive import BackupError, Chain, walk

# Where install.sh puts the scripts; a restore on another machine passes its own path.
RESTORE_SCRIPT = Path("/opt/qadam/deploy/backup/restore-wal.sh")


def parse_target(text: str) -> datetime | None:
    """An ISO 8601 time with its offset (2026-12-07T09:15:00+05:00), or ``latest`` (None: all
    the archive has). A time without an offset is refused: the server's, the operator's and UTC
    would be three different moments."""
    if text == "latest":
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BackupError(f"{text!r} is not a time (use 2026-12-07T09:15:00+05:00)") from exc
    if t.tzinfo is None:
        raise BackupError(f"{text!r} has no time zone (add one: +05:00 for Astana, Z for UTC)")
    return t


def choose(root: Path, target: datetime) -> BaseBackup:
    """The newest base backup that was consistent before ``target``."""
    backups = list_backups(root)
    if not backups:
        raise BackupError(f"no base backup in {root / 'base'}")
    before = [b for b in backups if b.finished_at <= target.timestamp()]
    if not before:
        raise BackupError(
            f"no base backup finished before {target.isoformat()} (the oldest finished at "
            f"{datetime.fromtimestamp(backups[0].finished_at, target.tzinfo).isoformat()}): "
            "a restore cannot go back before its backup"
        )
    return before[-1]


@dataclass(frozen=True)
class Plan:
    backup: BaseBackup
    chain: Chain


def plan(root: Path, target: datetime | None) -> Plan:
    """The backup and the checked WAL chain a restore to ``target`` (None: the archive's end)
    uses; writes nothing."""
    if target is None:
        backups = list_backups(root)
        if not backups:
            raise BackupError(f"no base backup in {root / 'base'}")
        backup = backups[-1]
        return Plan(backup, walk(root / "wal", backup.start_segment, backup.segment_size))
    backup = choose(root, target)
    chain = walk(root / "wal", backup.start_segment, backup.segment_size, target.timestamp())
    return Plan(backup, chain)


def restore(
    root: Path, target: datetime | None, data_dir: Path, restore_script: Path = RESTORE_SCRIPT
) -> Plan:
    """Fill ``data_dir`` (missing or empty) so that starting PostgreSQL on it replays to
    ``target`` (None: to the archive's end) and promotes. Start it yourself (pg_ctlcluster /
    systemctl): as its owner.

    PostgreSQL stops at a time when it meets the first commit after it: a target after the
    archive's last commit makes it refuse to open ("recovery ended before configured recovery
    target was reached"), though every commit is there: restore to ``latest`` then."""
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(
            f"{data_dir} is not empty: restore into an empty or new directory "
            "(move the damaged cluster's directory aside first)"
        )
    if not os.access(restore_script, os.X_OK):
        raise BackupError(
            f"{restore_script} is not an executable restore script "
            "(deploy/backup/restore-wal.sh; give --restore-script)"
        )
    archive = (root / "wal").resolve()
    for path in (archive, restore_script):
        if not set(str(path)).isdisjoint("'\\ \n"):  # it goes into a quoted setting
            raise BackupError(f"{path}: no quotes, backslashes or spaces in paths, please")
    p = plan(root, target)
    created = not data_dir.exists()
    try:
        shutil.copytree(p.backup.data, data_dir, symlinks=True, dirs_exist_ok=True)
        data_dir.chmod(0o700)  # PostgreSQL refuses a data directory others can read
        # the backup's own WAL copy is not needed: the archive has it, checked above, and a
        # stale pg_wal could only confuse which timeline is replayed
        for f in (data_dir / "pg_wal").iterdir():
            if f.is_file():
                f.unlink()
        with open(data_dir / "postgresql.auto.conf", "a") as conf:
            # without a target PostgreSQL replays all it can fetch and then opens
            to = (
                f"recovery_target_time = '{target.isoformat()}'\n"
                "recovery_target_inclusive = on\n"
                "recovery_target_action = 'promote'\n"
                if target is not None
                else ""
            )
            conf.write(
                "\n# qadam backup restore (D29-A): replay the archive to a point in time\n"
                f"restore_command = '{restore_script} %f %p {archive}'\n"
                # the backup's timeline: an older restore's promotion must not be followed
                "recovery_target_timeline = 'current'\n"
                f"{to}"
                # no read-only sessions during the replay: the cluster opens once, at the
                # target, or not at all (a replay that ends short stops the server)
                "hot_standby = off\n"
            )
        (data_dir / "recovery.signal").touch()
        if os.geteuid() == 0:
            # PostgreSQL runs only on a directory its own user owns: give the copy to the owner
            # of the directory it is in (/var/lib/postgresql/15 is postgres's)
            _chown_tree(data_dir, data_dir.parent.stat())
    except BaseException:
        # bad luck half-way (disk full): leave nothing that looks like a cluster
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            for child in data_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return p


def _chown_tree(top: Path, owner: os.stat_result) -> None:
    os.chown(top, owner.st_uid, owner.st_gid)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), owner.st_uid, owner.st_gid, follow_symlinks=False)
