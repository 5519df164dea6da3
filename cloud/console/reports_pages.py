"""The console's Reports page (issue #15, D28-F): a school's monthly meal and attendance reports
(generate, preview as HTML, acknowledge the cross-check's anomalies one by one, approve, download
PDF/XLSX/CSV with the session cookie), the reminder before the 5th, and the district's roll-up.

Everything goes through the API's functions (cloud/reports/service.py, anomalies.py) and role
tuples (cloud/api/reports.py: readers P/D/S, signers P/S); a school outside the caller's scope is
"not found", as in the API.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.numbers import format_decimal
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.auth import scope
from cloud.auth.principal import Principal, Role
from cloud.console import i18n, nav
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.pages import _lang, _nav
from cloud.console.reports_due import month_name as _month_name
from cloud.console.reports_due import reminders
from cloud.console.today import schools_in
from cloud.console.web import render
from cloud.domain.errors import Conflict, Invalid, NotFound
from cloud.reports import anomalies, build, due, service
from cloud.reports import render as documents

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])

# The API's role gates of the reports (cloud/api/reports.py ReportReader, ReportSigner).
READERS: tuple[Role, ...] = ("platform_admin", "district_authority", "school_admin")
SIGNERS: tuple[Role, ...] = ("platform_admin", "school_admin")
nav.register("/reports", N_("Reports"), READERS, 70)

FORMATS = ("pdf", "xlsx", "csv")
PREVIEW_ROWS = 300  # rows of a long table shown in the page; the downloads hold them all
STATUS_NAMES = {"not generated": N_("not generated"), "draft": N_("draft, not approved"),
                "approved": N_("approved")}  # fmt: skip
KIND_NAMES = {"meals": N_("Meals: free and subsidised"), "attendance": N_("Attendance")}
CHECK_NAMES = {"fed_not_present": N_("Meal recorded, pupil not on site"),
               "present_not_fed": N_("Eligible pupil present, not fed")}  # fmt: skip
PERSON_KINDS = {"student": N_("student"), "staff": N_("staff")}
ERRORS = {
    "month": N_("The month is not a month (YYYY-MM)."),
    "kind": N_("Unknown report."),
    "format": N_("Unknown file format."),
    "anomaly": N_("The report has no such anomaly."),
    "approved": N_("The report is approved already: it cannot be generated again."),
    "generate": N_("Generate the report first."),
    "open": N_("Approval refused: acknowledge every anomaly first."),
}


def _month(value: str | None, fallback: date) -> date:
    return build.parse_month(value) if value else fallback


def _default_month(conn: ConnDep, school: str | None) -> date:
    today = due.local_day(conn, school) if school else date.today()
    return build.prev_month(today.replace(day=1))


def _money(lang: str) -> Any:
    def fmt(value: str) -> str:
        return str(format_decimal(Decimal(value), "#,##0.00", locale=i18n.CLDR[lang]))

    return fmt


def _page_url(school: str, month: date, kind: str, anchor: str = "") -> str:
    q = urlencode({"school": school, "month": f"{month:%Y-%m}", "kind": kind})
    return f"/reports?{q}{anchor}"


def school_view(
    request: Request, conn: ConnDep, user: Principal, lang: str, school: str, month: date,
    kind: str, errors: list[str] | None = None, status_code: int = 200,
) -> Response:  # fmt: skip
    schools = schools_in(conn, scope.school_ids(conn, user))
    meta, content = service.read(conn, school, month, kind)  # type: ignore[arg-type]
    found = anomalies.of_report(conn, school, month) if kind == "meals" and meta else []
    live_check = content.get("crosscheck") if kind == "meals" and not meta else None
    return render(
        request, "reports.html", lang, status_code=status_code, user=user, nav=_nav(user),
        schools=schools, school=school, month=f"{month:%Y-%m}", month_name=_month_name(lang, month),
        kind=kind, kinds=KIND_NAMES, meta=meta, content=content, anomalies=found,
        open_anomalies=sum(1 for a in found if a.open), live_check=live_check,
        can_sign=user.role in SIGNERS, errors=errors or [],
        banner=reminders(conn, user, lang, school),
        status_names=STATUS_NAMES, check_names=CHECK_NAMES, person_kinds=PERSON_KINDS,
        money=_money(lang), preview_rows=PREVIEW_ROWS, formats=FORMATS,
        downloads={f: "/reports/download?" + urlencode({"school": school, "month": f"{month:%Y-%m}",
                                                        "kind": kind, "format": f})
                   for f in FORMATS},
    )  # fmt: skip


def _not_found(request: Request, lang: str, user: Principal) -> Response:
    return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))


@router.get("/reports")
def reports_page(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
    month: Annotated[str | None, Query(max_length=10)] = None,
    kind: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    require_role(user, READERS)
    lang = _lang(request, conn, user)
    shown = school or user.school_id
    try:
        if shown:
            scope.require_school(conn, user, shown)
    except NotFound:
        return _not_found(request, lang, user)
    errors: list[str] = []
    fallback = _default_month(conn, shown)
    try:
        m = _month(month, fallback)
    except Invalid:
        errors.append(ERRORS["month"])
        m = fallback
    if kind not in (None, "", *service.KINDS):
        errors.append(ERRORS["kind"])
    k = kind if kind in service.KINDS else "meals"
    status = 422 if errors else 200
    if not shown:
        schools = schools_in(conn, scope.school_ids(conn, user))
        if len(schools) != 1:
            # a district's or the platform's users: each school's state for the month
            return render(request, "reports_district.html", lang, status_code=status, user=user,
                          nav=_nav(user), month=f"{m:%Y-%m}", month_name=_month_name(lang, m),
                          rows=due.school_states(conn, schools, m), errors=errors,
                          status_names=STATUS_NAMES)  # fmt: skip
        shown = schools[0][0]
    return school_view(request, conn, user, lang, shown, m, k, errors, status)


SchoolForm = Annotated[str, Form(min_length=1, max_length=100)]
MonthForm = Annotated[str, Form(max_length=10)]
KindForm = Annotated[str, Form(max_length=20)]


def _form_target(
    request: Request, conn: ConnDep, user: Principal, school: str, month: str, kind: str
) -> tuple[str, date, service.Kind, Response | None]:
    """The language, the month and the report asked for, or the answer to give at once: a
    school outside the scope is "not found"; a wrong month or report is said in the page."""
    lang = _lang(request, conn, user)
    try:
        scope.require_school(conn, user, school)
    except NotFound:
        return lang, date.min, "meals", _not_found(request, lang, user)
    errors = [] if kind in service.KINDS else [ERRORS["kind"]]
    k: service.Kind = "attendance" if kind == "attendance" else "meals"
    try:
        m = build.parse_month(month)
    except Invalid:
        errors.append(ERRORS["month"])
        m = _default_month(conn, school)
    if errors:
        return lang, m, k, school_view(request, conn, user, lang, school, m, k, errors, 422)
    return lang, m, k, None


@router.post("/reports/generate")
def generate(
    request: Request, conn: ConnDep, user: ConsoleUser, school: SchoolForm, month: MonthForm,
    kind: KindForm,
) -> Response:  # fmt: skip
    require_role(user, SIGNERS)
    lang, m, k, answer = _form_target(request, conn, user, school, month, kind)
    if answer is not None:
        return answer
    try:
        service.generate(conn, school, m, k, user)
    except Conflict:
        return school_view(request, conn, user, lang, school, m, k, [ERRORS["approved"]], 409)
    return RedirectResponse(_page_url(school, m, k), status_code=303)


@router.post("/reports/acknowledge")
def acknowledge(
    request: Request, conn: ConnDep, user: ConsoleUser, school: SchoolForm, month: MonthForm,
    check: Annotated[str, Form(max_length=30)],
    person_id: Annotated[str, Form(max_length=20)],
    day: Annotated[str, Form(max_length=10)],
) -> Response:  # fmt: skip
    require_role(user, SIGNERS)
    lang, m, _k, answer = _form_target(request, conn, user, school, month, "meals")
    if answer is not None:
        return answer
    try:
        on, person = date.fromisoformat(day), int(person_id)
        if check not in anomalies.CHECKS or not 0 < person < 2**63:
            raise ValueError(check)
        anomalies.acknowledge(conn, user, school, m, check, person, on)  # type: ignore[arg-type]
    except (ValueError, NotFound):
        return school_view(request, conn, user, lang, school, m, "meals", [ERRORS["anomaly"]],
                           404)  # fmt: skip
    except Conflict:
        return school_view(request, conn, user, lang, school, m, "meals", [ERRORS["approved"]],
                           409)  # fmt: skip
    return RedirectResponse(_page_url(school, m, "meals", "#anomalies"), status_code=303)


@router.post("/reports/approve")
def approve(
    request: Request, conn: ConnDep, user: ConsoleUser, school: SchoolForm, month: MonthForm,
    kind: KindForm,
) -> Response:  # fmt: skip
    require_role(user, SIGNERS)
    lang, m, k, answer = _form_target(request, conn, user, school, month, kind)
    if answer is not None:
        return answer
    try:
        anomalies.approve(conn, user, school, m, k)
    except NotFound:
        return school_view(request, conn, user, lang, school, m, k, [ERRORS["generate"]], 404)
    except Conflict:
        return school_view(request, conn, user, lang, school, m, k, [ERRORS["open"]], 409)
    return RedirectResponse(_page_url(school, m, k), status_code=303)


@router.get("/reports/download")
def download(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str, Query(min_length=1, max_length=100)],
    month: Annotated[str, Query(max_length=10)],
    kind: Annotated[str, Query(max_length=20)],
    format: Annotated[str, Query(max_length=10)],
) -> Response:
    """The API's download (GET /api/v1/reports/schools/{id}/{kind}?format=) with the console's
    session instead of a bearer token: the same functions, the same document."""
    require_role(user, READERS)
    lang, m, k, answer = _form_target(request, conn, user, school, month, kind)
    if answer is not None:
        return answer
    if format not in FORMATS:
        return school_view(request, conn, user, lang, school, m, k, [ERRORS["format"]], 422)
    meta, content = service.read(conn, school, m, k)
    doc = documents.document(content, meta)
    return Response(
        documents.render(doc, format),  # type: ignore[arg-type]
        media_type=documents.MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="{doc.filename}.{format}"',
            "Cache-Control": "no-store",
        },  # fmt: skip
    )
