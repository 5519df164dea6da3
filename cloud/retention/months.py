"""Months as the event partitions cut them: whole UTC calendar months, named ``events_pYYYYMM``
(cloud/db/migrations/0002_timeseries.sql ``ensure_event_partitions``)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

PARTITION = re.compile(r"^events_p(\d{4})(\d{2})$")
MONTH_ARG = re.compile(r"^(\d{4})-(\d{2})$")


def first_of(d: date) -> date:
    return d.replace(day=1)


def add(month: date, n: int) -> date:
    """The first of the month ``n`` months after (or before, n < 0) ``month``."""
    index = month.year * 12 + (month.month - 1) + n
    return date(index // 12, index % 12 + 1, 1)


def start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def end(month: date) -> datetime:
    return start(add(month, 1))


def partition(month: date) -> str:
    return f"events_p{month:%Y%m}"


def file_name(month: date) -> str:
    return f"events-{month:%Y-%m}.pgcopy"


def of_partition(name: str) -> date | None:
    m = PARTITION.match(name)
    if not m or not 1 <= int(m.group(2)) <= 12:
        return None
    return date(int(m.group(1)), int(m.group(2)), 1)


def parse(text: str) -> date:
    """``2023-09`` -> 2023-09-01; anything else is a ValueError with the expected form."""
    m = MONTH_ARG.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise ValueError(f"not a month: {text!r} (expected YYYY-MM, e.g. 2023-09)")
    return date(int(m.group(1)), int(m.group(2)), 1)


def first_kept(current: date, keep_months: int) -> date:
    """The oldest month the policy keeps online: the current month and the ``keep_months - 1``
    before it. Everything before it is due for archiving."""
    if keep_months < 1:
        raise ValueError("keep_months must be at least 1 (the current month is always kept)")
    return add(first_of(current), -(keep_months - 1))
