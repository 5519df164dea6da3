"""``/api/v1/reports``: monthly meal and attendance reports, the meals-vs-presence cross-check,
approval, and the district's meal totals (docs/reports.md).

A school report is read from its stored row when there is one (frozen content), else computed
live as a preview. ``format`` = json (default), csv, xlsx or pdf.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field, StrictBool

from cloud.api.deps import ConnDep, PageDep, ReadConnDep, allow
from cloud.api.models import IdPath, Input, Page, page_of
from cloud.api.org import SchoolPath
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain.errors import NotFound
from cloud.reports import anomalies, build, render, service

router = APIRouter(prefix="/api/v1", tags=["reports"])

# Role gates (object scope on top: own school, own district).
ReportReader = Annotated[
    Principal, Depends(allow("platform_admin", "district_authority", "school_admin"))
]
ReportSigner = Annotated[Principal, Depends(allow("platform_admin", "school_admin"))]
DistrictReader = Annotated[Principal, Depends(allow("platform_admin", "district_authority"))]

MONTH_RE = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
MonthQuery = Annotated[str, Query(pattern=MONTH_RE, description="YYYY-MM")]
OptMonthQuery = Annotated[str | None, Query(pattern=MONTH_RE, description="YYYY-MM")]
FormatQuery = Annotated[Literal["json", "csv", "xlsx", "pdf"], Query()]
Kind = Literal["meals", "attendance"]


class ReportOut(BaseModel):
    id: int
    school_id: str
    month: str
    kind: str
    status: str
    summary: dict[str, Any]
    generated_at: datetime
    generated_by: int | None
    approved_at: datetime | None
    approved_by: int | None
    approved_by_name: str | None


class GenerateIn(Input):
    month: Annotated[str, Field(pattern=MONTH_RE)]
    kind: Kind


class ApproveIn(Input):
    month: Annotated[str, Field(pattern=MONTH_RE)]
    kind: Kind
    acknowledge_anomalies: StrictBool = False


def _out(
    content: dict[str, Any], meta: dict[str, Any] | None, fmt: str
) -> dict[str, Any] | Response:
    if fmt == "json":
        return {"report": ReportOut.model_validate(meta).model_dump() if meta else None,
                "content": content}  # fmt: skip
    doc = render.document(content, meta)
    body = render.render(doc, fmt)  # type: ignore[arg-type]
    return Response(
        body,
        media_type=render.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{doc.filename}.{fmt}"'},
    )


def _school_report(
    conn: ConnDep,
    read: ReadConnDep,
    p: Principal,
    school_id: str,
    month: str,
    kind: Kind,
    fmt: str,
) -> dict[str, Any] | Response:
    """The stored report, read where reads may lag (a report changes once a month)."""
    scope.require_school(conn, p, school_id)
    meta, content = service.read(read, school_id, build.parse_month(month), kind)
    return _out(content, meta, fmt)


@router.get("/reports", response_model=Page[ReportOut])
def list_reports(
    conn: ConnDep,
    p: ReportReader,
    page: PageDep,
    month: OptMonthQuery = None,
    school_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    kind: Kind | None = None,
    status: Literal["draft", "approved"] | None = None,
) -> Page[ReportOut]:
    schools = scope.school_ids(conn, p)
    if school_id is not None:
        scope.require_school(conn, p, school_id)
        schools = [school_id]
    m = build.parse_month(month) if month else None
    total, rows = service.list_reports(conn, schools, m, kind, status, page.limit, page.offset)
    return page_of(ReportOut, total, page.limit, page.offset, rows)


@router.get("/reports/schools/{school_id}/meals", response_model=None)
def school_meals(
    conn: ConnDep, read: ReadConnDep, p: ReportReader, school_id: SchoolPath, month: MonthQuery,
    format: FormatQuery = "json",
) -> dict[str, Any] | Response:  # fmt: skip
    """Free and subsidised meals per pupil with totals per category and school, and the
    cross-check."""
    return _school_report(conn, read, p, school_id, month, "meals", format)


@router.get("/reports/schools/{school_id}/attendance", response_model=None)
def school_attendance(
    conn: ConnDep, read: ReadConnDep, p: ReportReader, school_id: SchoolPath, month: MonthQuery,
    format: FormatQuery = "json",
) -> dict[str, Any] | Response:  # fmt: skip
    """Students and staff: first in, last out and lateness per day."""
    return _school_report(conn, read, p, school_id, month, "attendance", format)


@router.get("/reports/schools/{school_id}/crosscheck", response_model=None)
def school_crosscheck(
    conn: ConnDep, read: ReadConnDep, p: ReportReader, school_id: SchoolPath, month: MonthQuery,
    format: FormatQuery = "json",
) -> dict[str, Any] | Response:  # fmt: skip
    """Live meals-vs-presence check (what the administrator reviews before approving)."""
    scope.require_school(conn, p, school_id)
    m = build.parse_month(month)
    content = {
        "kind": "crosscheck",
        "school": build.school_info(read, school_id),
        "month": month,
        **build.crosscheck(read, school_id, m),
    }
    return _out(content, None, format)


class AnomalyOut(BaseModel):
    check: Literal["fed_not_present", "present_not_fed"]
    person_id: int
    name: str
    class_name: str
    day: date
    detail: dict[str, Any]
    acknowledged_by: str | None
    acknowledged_at: datetime | None


@router.get("/reports/schools/{school_id}/anomalies", response_model=list[AnomalyOut])
def school_anomalies(
    conn: ConnDep, p: ReportReader, school_id: SchoolPath, month: MonthQuery
) -> list[AnomalyOut]:
    """The stored meal report's cross-check anomalies and who acknowledged each, when (the
    console acknowledges them one by one before approving, D28-F); empty when not generated."""
    scope.require_school(conn, p, school_id)
    found = anomalies.of_report(conn, school_id, build.parse_month(month))
    return [AnomalyOut(check=a.check, person_id=a.person_id, name=a.name, class_name=a.klass,
                       day=a.day, detail=a.detail, acknowledged_by=a.acknowledged_by,
                       acknowledged_at=a.acknowledged_at) for a in found]  # fmt: skip


@router.post("/reports/schools/{school_id}/generate", response_model=ReportOut)
def generate(
    conn: ConnDep, p: ReportSigner, school_id: SchoolPath, body: GenerateIn
) -> dict[str, Any]:
    """Generate (or regenerate) a draft now. 409 once the report is approved."""
    scope.require_school(conn, p, school_id)
    return service.generate(conn, school_id, build.parse_month(body.month), body.kind, p)


@router.post("/reports/schools/{school_id}/approve", response_model=ReportOut)
def approve(
    conn: ConnDep, p: ReportSigner, school_id: SchoolPath, body: ApproveIn
) -> dict[str, Any]:
    """Sign off the stored report. 409 when the cross-check found anomalies and
    ``acknowledge_anomalies`` is not true; 404 when it was not generated."""
    scope.require_school(conn, p, school_id)
    m = build.parse_month(body.month)
    return service.approve(conn, p, school_id, m, body.kind, body.acknowledge_anomalies)


@router.get("/reports/districts/{district_id}/meals", response_model=None)
def district_meals(
    read: ReadConnDep, p: DistrictReader, district_id: IdPath, month: MonthQuery,
    format: FormatQuery = "json",
) -> dict[str, Any] | Response:  # fmt: skip
    """District totals by category and per school (with each school report's status)."""
    if p.role != "platform_admin" and p.district_id != district_id:
        raise NotFound(f"district {district_id} not found")
    return _out(build.district_meals(read, district_id, build.parse_month(month)), None, format)
