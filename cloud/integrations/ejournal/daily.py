"""The e-journal's daily hook: ``python -m cloud.integrations.ejournal.daily``. Every minute,
each connected school whose local clock has passed ``ejournal_push_at`` gets its day queued
(once: the job's keys say whether it was); the outbox worker pushes it. Several copies are safe
(the job locks per day). Runs as ``qadam worker ejournal`` (and under ``qadam run-all``); with
no school connected it only looks once a minute."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import datetime
from typing import Any

import psycopg

from cloud.integrations.ejournal import job
from cloud.outbox.contract import Conn

log = logging.getLogger("qadam.ejournal")
POLL_S = 60.0

_DUE = """
SELECT e.school_id, (t.now AT TIME ZONE s.timezone)::date
FROM ejournal_schools e JOIN schools s ON s.id = e.school_id
CROSS JOIN (SELECT coalesce(%s::timestamptz, now()) AS now) t
WHERE (t.now AT TIME ZONE s.timezone)::time >= %s::time
ORDER BY e.school_id"""


def tick(conn: Conn, push_at: str, at: datetime | None = None) -> list[str]:
    """Queue the local day of every connected school past ``push_at``; the keys queued."""
    queued = []
    for school_id, day in conn.execute(_DUE, (at, push_at)).fetchall():
        key = job.enqueue(conn, str(school_id), day)
        if key is not None:
            queued.append(key)
    return queued


def run(settings: Any, stop: threading.Event) -> None:
    from cloud.db.conn import connect

    while not stop.is_set():
        try:
            with connect(settings.database_url, application_name="qadam-ejournal") as conn:
                for key in tick(conn, settings.ejournal_push_at):
                    log.info("e-journal day queued", extra={"fields": {"key": key}})
        except psycopg.Error as e:
            log.warning("e-journal tick failed", extra={"fields": {"error": str(e)[:300]}})
        stop.wait(POLL_S)


def main(argv: list[str] | None = None) -> int:
    stop = threading.Event()

    def _stop(*_a: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from cloud.startup import start_worker

    return start_worker("cloud.integrations.ejournal.daily", lambda s: run(s, stop), argv)


if __name__ == "__main__":
    sys.exit(main())
