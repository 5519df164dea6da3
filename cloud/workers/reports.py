"""Report scheduler: ``python -m cloud.workers.reports``.

Every ``reports_poll_s`` seconds one transaction runs ``cloud.reports.service.tick`` with the
database's clock: on the 1st (school local date) the previous month's meal and attendance reports
are generated as drafts, and from ``reports_reminder_day`` on a 'report_reminder' outbox row goes
to the school's administrators while a report is not approved. Idempotent, so any number of
copies may run; a failed step is logged and retried on the next poll.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import datetime
from typing import Any

import psycopg

from cloud.db.conn import connect
from cloud.reports import service
from cloud.settings import Settings

log = logging.getLogger("qadam.reports")


def run_once(settings: Settings, at: datetime | None = None) -> dict[str, list[str]]:
    with connect(settings.database_url, application_name="qadam-reports") as conn:
        done = service.tick(conn, at, reminder_day=settings.reports_reminder_day)
    if done["generated"] or done["reminders"]:
        log.info("reports tick generated=%s reminders=%s", done["generated"], done["reminders"])
    return done


def run(settings: Settings, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            run_once(settings)
        except psycopg.Error as e:
            log.warning("reports tick failed error=%s detail=%s", type(e).__name__, e)
        stop.wait(settings.reports_poll_s)


def main(argv: list[str] | None = None) -> int:
    stop = threading.Event()

    def _stop(*_a: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from cloud.startup import start_worker

    return start_worker("cloud.workers.reports", lambda s: run(s, stop), argv)


if __name__ == "__main__":
    sys.exit(main())
