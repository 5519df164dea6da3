"""Retention worker: ``qadam worker retention``. Every ``retention_poll_s`` seconds one run of
cloud/retention/job.py (archive, check, drop the months past the policy); a failed run is
logged and retried on the next poll. Several copies are safe: one runs, the others skip."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import psycopg

from cloud.retention import job
from cloud.retention.archive import RetentionError
from cloud.settings import Settings

log = logging.getLogger("qadam.retention")


def run(settings: Settings, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            job.run_once(settings)
        except (psycopg.Error, RetentionError, OSError) as e:
            log.warning(
                "retention run failed",
                extra={"fields": {"error": f"{type(e).__name__}: {str(e)[:300]}"}},
            )
        stop.wait(settings.retention_poll_s)


def main(argv: list[str] | None = None) -> int:
    stop = threading.Event()

    def _stop(*_a: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from cloud.startup import start_worker

    return start_worker("cloud.workers.retention", lambda s: run(s, stop), argv)


if __name__ == "__main__":
    sys.exit(main())
