"""``/api/v1/schools/{school_id}/import``: bulk import of students, staff and guardians from
CSV or XLSX, with a dry run (docs/import.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, HTTPException, Path, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from cloud.api.deps import ConnDep, SchoolAdmin
from cloud.auth import scope
from cloud.imports.plan import Plan
from cloud.imports.reader import MAX_BYTES, FileProblem
from cloud.imports.run import run_import

router = APIRouter(prefix="/api/v1", tags=["import"])

SchoolPath = Annotated[str, Path(min_length=1, max_length=64)]
ImportKind = Literal["students", "staff", "guardians"]


class ImportErrorOut(BaseModel):
    row: int
    column: str | None
    value: str | None
    reason: str


class ImportReport(BaseModel):
    kind: ImportKind
    dry_run: bool
    applied: bool
    format: str
    rows: int
    valid: int
    errors: list[ImportErrorOut]
    would_create: dict[str, int]
    would_update: dict[str, int]
    new_classes: list[str]
    ignored_columns: list[str]
    not_stored_columns: list[str]
    invites_needed: list[str]  # e-mails of guardian accounts created without a password


def _report(plan: Plan, fmt: str, dry_run: bool, applied: bool) -> ImportReport:
    return ImportReport(
        kind=plan.kind,
        dry_run=dry_run,
        applied=applied,
        format=fmt,
        rows=plan.rows,
        valid=plan.valid,
        errors=[ImportErrorOut.model_validate(e, from_attributes=True) for e in plan.errors],
        would_create=plan.would_create(),
        would_update=plan.would_update(),
        new_classes=list(plan.new_classes.values()),
        ignored_columns=plan.ignored_columns,
        not_stored_columns=plan.not_stored_columns,
        invites_needed=list(plan.guardians_new),
    )


@router.post(
    "/schools/{school_id}/import",
    response_model=ImportReport,
    responses={413: {"description": "file or row count over the limit"},
               422: {"description": "unreadable file, or (real run) invalid rows"}},
)  # fmt: skip
def import_file(
    conn: ConnDep,
    p: SchoolAdmin,
    school_id: SchoolPath,
    file: Annotated[UploadFile, File(description="CSV (UTF-8 or Windows-1251) or XLSX")],
    kind: Annotated[ImportKind, Query()],
    dry_run: Annotated[bool, Query()] = True,
    create_classes: Annotated[bool, Query()] = True,
) -> ImportReport | JSONResponse:
    """Validate every row; with ``dry_run=true`` (the default) report what would change and
    change nothing. With ``dry_run=false`` apply everything in one transaction, or nothing
    (422) when any row is invalid. Re-importing the same file changes nothing."""
    scope.require_school(conn, p, school_id)
    data = file.file.read(MAX_BYTES + 1)
    try:
        run = run_import(conn, p, school_id, kind, data, file.filename or "", dry_run,
                         create_classes)  # fmt: skip
    except FileProblem as e:
        raise HTTPException(e.status, detail=[
            {"type": "value_error", "loc": ["body", "file"], "msg": e.msg}]) from None  # fmt: skip
    plan, fmt = run.plan, run.format
    if dry_run:
        return _report(plan, fmt, dry_run=True, applied=False)
    if not run.applied:
        report = _report(plan, fmt, dry_run=False, applied=False)
        detail = [
            {"type": "value_error", "loc": ["body", "file", e.row, e.column or ""],
             "msg": e.reason, "input": e.value}
            for e in plan.errors
        ]  # fmt: skip
        return JSONResponse(
            {"detail": detail, "report": report.model_dump(mode="json")}, status_code=422
        )
    return _report(plan, fmt, dry_run=False, applied=True)
