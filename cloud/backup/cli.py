"""``qadam backup base|check|restore`` (D29-A, docs/deploy.md "Backups and restore"). Runs as the
``postgres`` system user on an installed machine (deploy/backup/qadam-basebackup.service): it
owns the cluster, the backup directory and the replication right over the local socket."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cloud.backup import archiver, base, restore, walarchive
from cloud.backup.walarchive import BackupError

DEFAULT_DIR = Path("/var/lib/qadam-backup")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="backup_command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--dir",
            type=Path,
            default=DEFAULT_DIR,
            help=f"the backup directory (wal/ and base/; default {DEFAULT_DIR})",
        )
        q.add_argument(
            "--pg-bindir",
            type=Path,
            help="PostgreSQL's programs (default: the newest /usr/lib/postgresql/N/bin)",
        )

    q = sub.add_parser("base", help="make and verify a base backup, then drop old ones")
    common(q)
    q.add_argument("--keep", type=int, default=4, help="base backups to keep (default 4)")
    q.add_argument("--host", help="server host or socket directory (default: libpq's)")
    q.add_argument("--port", help="server port (default: libpq's)")
    q.add_argument("--user", help="role with REPLICATION (default: the system user's name)")
    q.set_defaults(backup_func=_base)

    q = sub.add_parser("check", help="verify the newest base backup and the WAL archive's chain")
    common(q)
    q.add_argument(
        "--max-age-hours",
        type=float,
        default=26.0,
        help="the newest base backup must be younger (default 26: a daily timer)",
    )
    q.add_argument(
        "--database",
        default="dbname=postgres",
        help="libpq connection string of the server, for its archiver's state "
        "(default: the local socket as this system user)",
    )
    q.add_argument("--no-server", action="store_true", help="check the files only")
    q.set_defaults(backup_func=_check)

    q = sub.add_parser("restore", help="fill an empty data directory to replay to a point in time")
    common(q)
    q.add_argument(
        "--to",
        required=True,
        dest="target",
        help="the point in time, with its offset: 2026-12-07T09:15:00+05:00; or latest (all "
        "the archive has)",
    )
    q.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        help="an empty or new directory; start PostgreSQL on it afterwards",
    )
    q.add_argument(
        "--restore-script",
        type=Path,
        default=restore.RESTORE_SCRIPT,
        help=f"restore_command's script (default {restore.RESTORE_SCRIPT})",
    )
    q.set_defaults(backup_func=_restore)


def run(args: argparse.Namespace) -> int:
    try:
        return int(args.backup_func(args))
    except BackupError as exc:
        print(f"qadam backup: {exc}", file=sys.stderr)
        return 1


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _base(args: argparse.Namespace) -> int:
    connection = []
    for flag, value in (("-h", args.host), ("-p", args.port), ("-U", args.user)):
        if value:
            connection += [flag, value]
    b = base.take(args.dir, connection, args.pg_bindir)
    print(
        f"base backup {b.path.name}: verified, WAL from {b.start_segment.name}, "
        f"consistent at {_when(b.finished_at)}"
    )
    gone, segments = base.prune(args.dir, args.keep)
    for path in gone:
        print(f"removed base backup {path.name} (more than {args.keep})")
    if segments:
        print(f"removed {segments} archived WAL segments older than every kept backup")
    return 0


def _check(args: argparse.Namespace) -> int:
    backups = base.list_backups(args.dir)
    if not backups:
        raise BackupError(f"no base backup in {args.dir / 'base'}")
    newest = backups[-1]
    base.verify(newest, args.pg_bindir)
    print(f"{len(backups)} base backups; newest {newest.path.name} verified")
    # from the oldest kept backup of each timeline (a restore starts a new one): every backup
    # can replay to the end of its timeline in the archive
    oldest: dict[int, base.BaseBackup] = {}
    for b in backups:
        oldest.setdefault(b.start_segment.timeline, b)
    for b in oldest.values():
        chain = walarchive.walk(args.dir / "wal", b.start_segment, b.segment_size)
        print(
            f"WAL archive: {chain.count} segments {chain.first.name}..{chain.last.name}, "
            f"no hole, none damaged; last archived {_when(chain.last_archived_at)}"
        )
    if not args.no_server:
        print(archiver.check_archiver(args.database))
    age = (time.time() - newest.finished_at) / 3600
    if age > args.max_age_hours:
        raise BackupError(
            f"the newest base backup is {age:.1f} h old (more than "
            f"{args.max_age_hours:g} h): is qadam-basebackup.timer running?"
        )
    return 0


def _restore(args: argparse.Namespace) -> int:
    target = restore.parse_target(args.target)
    p = restore.restore(args.dir, target, args.data_dir, args.restore_script)
    print(
        f"{args.data_dir}: base backup {p.backup.path.name} and WAL "
        f"{p.chain.first.name}..{p.chain.last.name} ({p.chain.count} segments, checked); "
        f"starting PostgreSQL on it replays to {target.isoformat() if target else 'the end'} "
        "and opens"
    )
    return 0
