"""``qadam retention``: run the job once now; ``--dry-run`` lists what it would do and changes
nothing; ``restore YYYY-MM`` loads one archived month back (cloud/retention/restore.py)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

EXIT_REFUSED = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "what",
        nargs="*",
        metavar="restore YYYY-MM",
        help="restore one archived month (e.g. restore 2023-09); none: run once",
    )
    p.add_argument("--dry-run", action="store_true", help="list the months that would go")
    p.add_argument("--json", action="store_true", help="--dry-run: one JSON object per month")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cloud import logs
    from cloud.startup import check_database, load_settings

    logs.setup("retention")
    settings = load_settings()
    check_database(settings.database_url)
    if args.what:
        if len(args.what) != 2 or args.what[0] != "restore":
            print("qadam retention: expected `restore YYYY-MM` or nothing", file=sys.stderr)
            return 2
        return _restore(settings, args.what[1])
    if args.dry_run:
        return _dry_run(settings, args.json)
    from cloud.retention import job

    out = job.run_once(settings)
    if out.skipped:
        print(f"nothing done: {out.skipped}", file=sys.stderr)
        return EXIT_REFUSED if "directory" in out.skipped else 0
    return EXIT_REFUSED if out.failed else 0


def _dry_run(settings: Any, as_json: bool) -> int:
    from cloud.db.conn import connect
    from cloud.retention import months, plan

    with connect(settings.database_url, autocommit=True, application_name="qadam-retention") as c:
        current = plan.current_month(c)
        due = plan.due(c, settings.retention_months)
    first = months.first_kept(current, settings.retention_months)
    if as_json:
        for m in due:
            print(json.dumps(m.as_dict()))
        return 0
    print(
        f"policy: keep {settings.retention_months} months online ({first:%Y-%m} to"
        f" {current:%Y-%m}); archive directory: {settings.retention_archive_dir or 'NOT SET'}"
    )
    if not due:
        print("nothing would go")
    for m in due:
        print(
            f"{m.month:%Y-%m}  {m.action:<8} {months.partition(m.month)}"
            f"  ~{m.rows_estimate} rows  {m.bytes_online} bytes online"
            f"  (archive: {m.state or 'none'})"
        )
    return 0


def _restore(settings: Any, text: str) -> int:
    from cloud.db.conn import connect
    from cloud.retention import months
    from cloud.retention.archive import RetentionError
    from cloud.retention.job import locked
    from cloud.retention.restore import restore

    try:
        month = months.parse(text)
    except ValueError as e:
        print(f"qadam retention restore: {e}", file=sys.stderr)
        return 2
    if not settings.retention_archive_dir:
        print("qadam retention restore: QADAM_RETENTION_ARCHIVE_DIR is not set", file=sys.stderr)
        return 2
    log = logging.getLogger("qadam.retention")
    with connect(settings.database_url, autocommit=True, application_name="qadam-retention") as c:
        if not locked(c):
            print(
                "qadam retention restore: a retention run is in progress; try again later",
                file=sys.stderr,
            )
            return EXIT_REFUSED
        try:
            rows = restore(
                c,
                month,
                Path(settings.retention_archive_dir),
                settings.retention_restore_hold_days,
                settings.retention_lock_timeout_s,
            )
        except RetentionError as e:
            log.error(
                "retention restore refused", extra={"fields": {"month": text, "error": str(e)}}
            )
            print(f"qadam retention restore: {e}", file=sys.stderr)
            return EXIT_REFUSED
    log.info(
        "retention restored",
        extra={
            "fields": {
                "month": f"{month:%Y-%m}",
                "rows": rows,
                "hold_days": settings.retention_restore_hold_days,
            }
        },
    )
    print(
        f"{month:%Y-%m}: {rows} rows restored, held online for"
        f" {settings.retention_restore_hold_days} days"
    )
    return 0
