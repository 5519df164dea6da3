"""The reminder banner of the monthly reports (D28-F): shown to a school admin on /reports and
/today while last month's reports are not approved, naming the deadline (the 5th)."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from babel.dates import format_date

from cloud.auth.principal import Principal
from cloud.console import i18n
from cloud.console.i18n import N_
from cloud.reports import due

Conn = psycopg.Connection[Any]
WHAT = {"meals": N_("The meal report for %(month)s"),
        "attendance": N_("The attendance report for %(month)s")}  # fmt: skip
DUE = N_("%(what)s is due by %(deadline)s: not approved yet.")
OVERDUE = N_("%(what)s was due by %(deadline)s: not approved yet.")


def month_name(lang: str, m: date) -> str:
    """The month and year in the language, "October 2025" (the standalone month form: Kazakh
    and Russian decline it inside a date)."""
    return str(format_date(m, "LLLL y", locale=i18n.CLDR[lang]))


def reminders(conn: Conn, user: Principal, lang: str, school: str | None) -> list[str]:
    """The banner's lines: for a school admin, last month's reports not approved yet."""
    if user.role != "school_admin" or school is None:
        return []
    lines = []
    for d in due.due(conn, school):
        what = i18n.gettext(lang, WHAT[d.kind]) % {"month": month_name(lang, d.month)}
        deadline = str(format_date(d.deadline, "d MMMM", locale=i18n.CLDR[lang]))
        text = i18n.gettext(lang, OVERDUE if d.overdue else DUE)
        lines.append(text % {"what": what, "deadline": deadline})
    return lines
