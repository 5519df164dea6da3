"""One retention run: every due month archived, checked and dropped, oldest first, a JSON log
line per step and Prometheus counters. One run at a time across machines (an advisory lock on
the run's own connection). A month whose step fails stays online and the run goes on to the
next; the next run retries it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge

from cloud.db.conn import connect
from cloud.retention import archive, months, plan
from cloud.retention.archive import RetentionError
from cloud.retention.pgcopy import BadArchive

log = logging.getLogger("qadam.retention")
LOCK_KEY = "qadam.retention"

STEPS = Counter("qadam_retention_steps", "retention steps by outcome", ["step", "outcome"])
ROWS = Counter("qadam_retention_rows", "event rows archived, dropped or restored", ["step"])
LAST_RUN = Gauge("qadam_retention_last_run_timestamp_seconds", "end of the last retention run")
DUE = Gauge("qadam_retention_months_due", "months past the policy still online after a run")


@dataclass
class Outcome:
    archived: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: str | None = None  # why nothing ran


def _event(level: int, msg: str, **fields: Any) -> None:
    log.log(level, msg, extra={"fields": fields})


def locked(conn: Any) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (LOCK_KEY,)).fetchone()
    return bool(row[0])


def run_once(settings: Any, current: date | None = None) -> Outcome:
    """Archive and drop what the policy (``retention_months``) says is due. ``current``: the
    month to count from (tests); default the database's current month."""
    out = Outcome()
    if not settings.retention_archive_dir:
        out.skipped = "no archive directory (QADAM_RETENTION_ARCHIVE_DIR): nothing is dropped"
        _event(logging.WARNING, "retention off", reason=out.skipped)
        return out
    directory = Path(settings.retention_archive_dir)
    with connect(settings.database_url, autocommit=True, application_name="qadam-retention") as c:
        if plan.storage_flavour(c) != "native":
            raise RetentionError("events is a TimescaleDB hypertable: use its own chunk policy")
        if not locked(c):
            out.skipped = "another retention run holds the lock"
            _event(logging.INFO, "retention skipped", reason=out.skipped)
            return out
        started = time.monotonic()
        due = plan.due(c, settings.retention_months, current)
        _event(
            logging.INFO,
            "retention plan",
            keep_months=settings.retention_months,
            due=len(due),
            months=",".join(f"{m.month:%Y-%m}:{m.action}" for m in due),
        )
        for m in due:
            _step(c, settings, directory, m, out)
        left = [m for m in plan.due(c, settings.retention_months, current) if m.action != "hold"]
        DUE.set(len(left))
        LAST_RUN.set_to_current_time()
        _event(
            logging.INFO,
            "retention run done",
            archived=len(out.archived),
            dropped=len(out.dropped),
            failed=len(out.failed),
            seconds=round(time.monotonic() - started, 3),
        )
    return out


def _step(c: Any, settings: Any, directory: Path, m: plan.Month, out: Outcome) -> None:
    name = f"{m.month:%Y-%m}"
    action = m.action
    if action == "hold":
        _event(logging.INFO, "retention hold", month=name, hold_until=m.hold_until)
        return
    if action == "late":  # never written over the only copy: an operator restores first
        _event(
            logging.WARNING,
            "retention late rows for a dropped month",
            month=name,
            rows=m.rows_estimate,
            what="restore the month, then the job archives it again",
        )
        STEPS.labels("archive", "late").inc()
        out.failed.append(name)
        return
    timeout = settings.retention_lock_timeout_s
    try:
        if action == "archive":
            t = time.monotonic()
            a = archive.archive(c, m.month, directory, timeout)
            STEPS.labels("archive", "ok").inc()
            ROWS.labels("archive").inc(a.rows)
            out.archived.append(name)
            _event(
                logging.INFO,
                "retention archived",
                month=name,
                file=a.path.name,
                rows=a.rows,
                bytes=a.size,
                sha256=a.sha256,
                seconds=round(time.monotonic() - t, 3),
            )
        t = time.monotonic()
        rows = archive.drop(c, m.month, directory, timeout)
        if rows < 0:
            STEPS.labels("drop", "changed").inc()
            out.failed.append(name)
            _event(
                logging.WARNING,
                "retention rows changed since the archive",
                month=name,
                what="archived again on the next run",
            )
            return
        STEPS.labels("drop", "ok").inc()
        ROWS.labels("drop").inc(rows)
        out.dropped.append(name)
        _event(
            logging.INFO,
            "retention dropped",
            month=name,
            partition=months.partition(m.month),
            rows=rows,
            seconds=round(time.monotonic() - t, 3),
        )
    except (RetentionError, BadArchive, OSError, psycopg.Error) as e:
        STEPS.labels(action, "failed").inc()
        out.failed.append(name)
        _event(
            logging.ERROR,
            "retention step failed",
            month=name,
            step=action,
            error=f"{type(e).__name__}: {str(e)[:300]}",
            kept="the month stays online",
        )
