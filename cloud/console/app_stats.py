"""The parents' app's statistics page (issue #16, D28-H): one child's month: days present, late
arrivals (a first entry after the school's day_start, as the monthly attendance report counts
it, cloud/reports/build.py), the average arrival time in the school's zone, meals by day, the
same against last month, as charts (cloud/console/charts.py); and the child's own lines of the
school's monthly reports when the school has made them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Annotated, Any

from babel.dates import format_date, format_time
from babel.numbers import format_decimal
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from cloud.api.deps import ConnDep
from cloud.console import app_child, app_nav, charts, i18n
from cloud.console.app_pages import AppUser
from cloud.console.guard import check_csrf
from cloud.console.i18n import N_
from cloud.console.web import render
from cloud.domain.errors import Invalid, NotFound
from cloud.reports import service as reports
from cloud.reports.build import next_month, parse_month, prev_month

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
app_nav.register("stats", N_("Statistics"), 40, app_nav.BOTH)


@dataclass
class Month:
    start: date
    arrivals: dict[date, time] = field(default_factory=dict)  # first entry, school's zone
    late: set[date] = field(default_factory=set)
    meals: dict[date, int] = field(default_factory=dict)

    @property
    def days(self) -> list[date]:
        end = next_month(self.start)
        return [self.start + timedelta(days=i) for i in range((end - self.start).days)]

    @property
    def average_arrival(self) -> time | None:
        if not self.arrivals:
            return None
        secs = sum(t.hour * 3600 + t.minute * 60 + t.second for t in self.arrivals.values())
        avg = round(secs / len(self.arrivals))
        return time(avg // 3600, avg % 3600 // 60, avg % 60)


def month_of(conn: Any, person_id: int, start: date) -> Month:
    m = Month(start)
    for day, first, late in conn.execute(
        "SELECT a.day, (a.first_in AT TIME ZONE s.timezone)::time,"
        " (a.first_in AT TIME ZONE s.timezone)::time > s.day_start"
        " FROM attendance a JOIN schools s ON s.id = a.school_id"
        " WHERE a.person_id = %s AND a.day >= %s AND a.day < %s AND a.first_in IS NOT NULL",
        (person_id, start, next_month(start)),
    ).fetchall():
        m.arrivals[day] = first
        if late:
            m.late.add(day)
    m.meals = {d: int(n) for d, n in conn.execute(
        "SELECT day, count(*) FROM meal_receipts WHERE person_id = %s AND day >= %s"
        " AND day < %s GROUP BY 1",
        (person_id, start, next_month(start)),
    ).fetchall()}  # fmt: skip
    return m


def report_lines(conn: Any, school_id: str, start: date, person_id: int) -> dict[str, Any]:
    """The child's lines of the school's stored monthly reports (status and lines), if any."""
    out: dict[str, Any] = {}
    for kind in ("attendance", "meals"):
        got = reports.get(conn, school_id, start, kind)
        if got is None:
            continue
        meta, data = got
        lines = [x for x in data.get("lines", []) if x.get("person_id") == person_id]
        out[kind] = {"status": meta.get("status"), "lines": lines}
    return out


def _charts(m: Month, before: Month, upto: date, lang: str) -> list[tuple[str, charts.Chart]]:
    def t(message: str) -> str:
        return i18n.gettext(lang, message)

    def num(v: float) -> str:
        return format_decimal(v, locale=i18n.CLDR[lang])

    def hm(hours: float) -> str:
        minutes = round(hours * 60)
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    days = [d for d in m.days if d <= upto]
    hours = {d: a.hour + a.minute / 60 for d, a in m.arrivals.items()}
    floor = float(min([7, *(int(h) for h in hours.values())]))
    arrival = charts.bar_chart(
        t(N_("Arrival time by day")), t(N_("Day")), t(N_("Came in at")),
        [(str(d.day), hours.get(d, floor), hm(hours[d]) if d in hours else "—") for d in days],
        tick_text=hm, floor=floor, whole=False,
    )  # fmt: skip
    compare: list[tuple[float, str] | None] = []
    for d in days:
        try:
            then = before.start.replace(day=d.day)
        except ValueError:
            compare.append(None)
            continue
        compare.append((before.meals.get(then, 0), num(before.meals.get(then, 0))))
    meals = charts.bar_chart(
        t(N_("Meals by day")), t(N_("Day")), t(N_("This month")),
        [(str(d.day), m.meals.get(d, 0), num(m.meals.get(d, 0))) for d in days],
        compare_header=t(N_("Same day last month")), compare=compare, tick_text=num,
    )  # fmt: skip
    rows = [(t(N_("Days present")), len(m.arrivals), len(before.arrivals)),
            (t(N_("Late arrivals")), len(m.late), len(before.late)),
            (t(N_("Meals")), sum(m.meals.values()), sum(before.meals.values()))]  # fmt: skip
    trend = charts.bar_chart(
        t(N_("This month and last month")), t(N_("What")), t(N_("This month")),
        [(label, now, num(now)) for label, now, _b in rows],
        compare_header=t(N_("Last month")), compare=[(b, num(b)) for _l, _n, b in rows],
        tick_text=num, joined=False,
    )  # fmt: skip
    return [("chart-arrival", arrival), ("chart-meals", meals), ("chart-trend", trend)]


@router.get("/app/{lang}/stats")
def stats_page(
    request: Request, conn: ConnDep, lang: str, user: AppUser,
    child: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    month: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:  # fmt: skip
    try:
        kids, shown = app_child.pick(conn, user, child)
    except NotFound:
        return render(request, "app_not_found.html", lang, status_code=404, user=user,
                      children=[], page="stats")  # fmt: skip
    ctx: dict[str, Any] = {"user": user, "children": kids, "shown": shown, "page": "stats",
                           "child_id": shown.id if shown else None}  # fmt: skip
    if shown is None:
        return render(request, "app_stats.html", lang, **ctx)
    row = conn.execute(
        "SELECT s.id, (now() AT TIME ZONE s.timezone)::date FROM people p"
        " JOIN schools s ON s.id = p.school_id WHERE p.id = %s",
        (shown.id,),
    ).fetchone()
    assert row is not None  # the child was found in scope just now
    sid, today = row
    current = today.replace(day=1)
    try:
        start = parse_month(month) if month else current
    except Invalid:
        start = None
    if start is None or start > current or start.year < 2000:
        return render(request, "app_stats.html", lang, status_code=400, error=i18n.gettext(
            lang, N_("Choose a month as YYYY-MM, not in the future.")), month=None,
            this_month=current.strftime("%Y-%m"), **ctx)  # fmt: skip
    m, before = month_of(conn, shown.id, start), month_of(conn, shown.id, prev_month(start))
    upto = min(today, next_month(start) - timedelta(days=1))
    avg = m.average_arrival
    return render(
        request, "app_stats.html", lang, error=None, month=start,
        month_name=format_date(start, "LLLL y", locale=i18n.CLDR[lang]),
        prev=prev_month(start).strftime("%Y-%m"),
        next=next_month(start).strftime("%Y-%m") if start < current else None,
        present=len(m.arrivals), late=len(m.late), meals=sum(m.meals.values()),
        average=format_time(avg, "HH:mm", locale=i18n.CLDR[lang]) if avg else None,
        charts=_charts(m, before, upto, lang),
        reports=report_lines(conn, sid, start, shown.id), **ctx,
    )  # fmt: skip
