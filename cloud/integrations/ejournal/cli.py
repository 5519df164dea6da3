"""``qadam ejournal``: connect a school to the e-journal, and queue a school's day (or every
connected school's) for the outbox worker to push. A daily timer runs
``qadam ejournal push --all --date yesterday``."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date, timedelta


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="ejournal_command", required=True)
    c = sub.add_parser("connect", help="connect a school: its id at the e-journal, its start")
    c.add_argument("--school", required=True)
    c.add_argument("--external-id", required=True, help="the school's id at the e-journal")
    c.add_argument("--starts-at", default="08:30", help="local HH:MM; later arrivals are late")
    q = sub.add_parser("push", help="queue a day for the e-journal")
    q.add_argument("--date", required=True, help="YYYY-MM-DD, today or yesterday")
    who = q.add_mutually_exclusive_group(required=True)
    who.add_argument("--school")
    who.add_argument("--all", action="store_true", help="every connected school")
    q.add_argument("--again", action="store_true", help="send a day sent before (corrections)")
    p.set_defaults(func=run)


def parse_day(text: str, today: date) -> date:
    if text == "today":
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    return date.fromisoformat(text)


def run(args: argparse.Namespace) -> int:
    from cloud.db.conn import connect
    from cloud.domain.errors import NotFound
    from cloud.integrations.ejournal import job
    from cloud.startup import check_database, load_settings

    settings = load_settings()
    check_database(settings.database_url)
    try:
        with connect(settings.database_url, application_name="qadam-ejournal") as conn:
            if args.ejournal_command == "connect":
                if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", args.starts_at):
                    print("qadam ejournal: --starts-at must be HH:MM", file=sys.stderr)
                    return 2
                job.connect_school(conn, args.school, args.external_id, args.starts_at)
                print(f"{args.school}: connected as {args.external_id}")
                return 0
            row = conn.execute("SELECT current_date").fetchone()
            assert row is not None
            try:
                day = parse_day(args.date, row[0])
            except ValueError:
                print("qadam ejournal: --date must be YYYY-MM-DD, today or yesterday",
                      file=sys.stderr)  # fmt: skip
                return 2
            if args.all:
                keys = job.enqueue_all(conn, day)
            else:
                key = job.enqueue(conn, args.school, day, again=args.again)
                if key is None:
                    print(f"{args.school} {day}: queued before; --again sends it again")
                keys = [key] if key else []
            for k in keys:
                print(f"queued {k}")
    except NotFound as e:
        print(f"qadam ejournal: {e}", file=sys.stderr)
        return 1
    return 0
