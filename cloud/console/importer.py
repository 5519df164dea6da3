"""The console's import wizard (issue #15): upload a CSV or XLSX of pupils, staff or guardians,
see the dry run (row errors and what would change) before anything changes, then apply exactly
the file that was checked.

The import itself is the API's (cloud/imports/run.py ``run_import``, which
``POST /api/v1/schools/{id}/import`` calls too): one parser, one set of rules, one scope check.
The checked file is kept server-side (table ``import_uploads``, migration 0029) under its
SHA-256; "Apply" names the upload, its hash and a fingerprint of the summary shown, and the
server applies those bytes only if the plan is still the one shown (D28-B)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import ConnDep
from cloud.api.models import IdPath
from cloud.auth import scope
from cloud.auth.principal import Principal, Role
from cloud.console import i18n, nav
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.i18n import N_
from cloud.console.import_reasons import field_name, translate
from cloud.console.pages import _lang, _nav
from cloud.console.today import schools_in
from cloud.console.web import render
from cloud.domain.errors import NotFound
from cloud.imports.plan import Plan
from cloud.imports.reader import MAX_BYTES, MAX_ROWS, FileProblem
from cloud.imports.run import ImportRun, run_import

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
# who may import: the API's import route (cloud/api/imports.py, SchoolAdmin)
IMPORTERS: tuple[Role, ...] = ("platform_admin", "school_admin")
nav.register("/import", N_("Import"), IMPORTERS, 35)
KINDS = {"students": N_("Pupils"), "staff": N_("Staff"), "guardians": N_("Guardians")}
SUFFIXES = (".csv", ".xlsx", ".txt")
KEEP_UPLOADS = "1 day"


def fingerprint(plan: Plan) -> str:
    """What the person saw and agreed to: the counts of the plan (not its order)."""
    shown = {"c": plan.would_create(), "u": plan.would_update(), "v": plan.valid,
             "k": plan.kind, "e": len(plan.errors)}  # fmt: skip
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:32]


def summary(plan: Plan) -> dict[str, int]:
    if plan.kind == "guardians":
        return {"new": len(plan.guardians_new), "links": len(plan.links_new), "valid": plan.valid}
    new, updated = len(plan.people_new), len(plan.people_upd)
    made = {"new": new, "updated": updated, "unchanged": plan.valid - new - updated,
            "classes": len(plan.new_classes), "cards": len(plan.cards_new),
            "valid": plan.valid}  # fmt: skip
    if plan.accounts_column:  # pupils' app accounts (D29-E)
        made["accounts"] = len(plan.accounts_new)
    return made


def _schools(conn: ConnDep, user: Principal) -> list[tuple[str, str]]:
    return schools_in(conn, scope.school_ids(conn, user))


def _page(request: Request, conn: ConnDep, user: Principal, lang: str, **ctx: Any) -> Response:
    schools = _schools(conn, user)
    shown = user.school_id or (schools[0][0] if schools else None)
    base: dict[str, Any] = {"schools": schools, "school": shown,
            "kind": "students", "error": None, "run": None, "rows": [], "sum": None,
            "upload": None, "notice": None, "create_classes": True,
            "KINDS": KINDS, "max_mb": MAX_BYTES // (1024 * 1024), "max_rows": MAX_ROWS}  # fmt: skip
    base.update(ctx)
    return render(request, "import.html", lang, user=user, nav=_nav(user), **base)


@router.get("/import")
def upload_form(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    require_role(user, IMPORTERS)
    lang = _lang(request, conn, user)
    if school:
        try:
            scope.require_school(conn, user, school)
        except NotFound:
            return render(request, "not_found.html", lang, status_code=404, user=user,
                          nav=_nav(user))  # fmt: skip
        return _page(request, conn, user, lang, school=school)
    return _page(request, conn, user, lang)


def _rows(lang: str, run: ImportRun) -> list[dict[str, Any]]:
    return [{"row": e.row, "column": field_name(lang, e.column), "value": e.value or "",
             "reason": translate(lang, e.reason)} for e in run.plan.errors]  # fmt: skip


def _dry_run(conn: ConnDep, user: Principal, school: str, kind: Any, data: bytes, name: str,
             create_classes: bool) -> ImportRun:  # fmt: skip
    """The API's dry run in a savepoint that is rolled back: its read-only setting ends with
    it, so the upload can be stored afterwards in the same transaction."""
    result: list[ImportRun] = []
    with conn.transaction() as tx:
        result.append(run_import(conn, user, school, kind, data, name, True, create_classes))
        raise psycopg.Rollback(tx)
    return result[0]


@router.post("/import/check")
def check(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    file: Annotated[UploadFile | None, File()] = None,
    school: Annotated[str, Form(max_length=100)] = "",
    kind: Annotated[str, Form(max_length=20)] = "students",
    create_classes: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    require_role(user, IMPORTERS)
    lang = _lang(request, conn, user)
    school = school or user.school_id or ""
    create = create_classes == "1"
    form: dict[str, Any] = {"school": school, "kind": kind, "create_classes": create}

    def again(message: str, **values: Any) -> Response:
        # the form again with its message: a 200, as the sign-in does (D27-E)
        return _page(request, conn, user, lang, error=i18n.gettext(lang, message) % values,
                     **form)  # fmt: skip

    if kind not in KINDS:
        return again(N_("Choose what the file holds."))
    try:
        scope.require_school(conn, user, school)
    except NotFound:
        return again(N_("Choose a school."))
    name = (file.filename or "") if file is not None else ""
    if file is None or not name:
        return again(N_("Choose a file."))
    if not name.lower().endswith(SUFFIXES):
        return again(N_("Choose a CSV or XLSX file (%(name)s is neither)."), name=name[:100])
    data = file.file.read(MAX_BYTES + 1)
    try:
        run = _dry_run(conn, user, school, kind, data, name, create)
    except FileProblem as e:
        return _page(request, conn, user, lang, error=translate(lang, e.msg), **form)
    upload = None
    if not run.plan.errors:
        conn.execute(
            "DELETE FROM import_uploads WHERE school_id = %s AND created_at < now() - %s::interval",
            (school, KEEP_UPLOADS),
        )
        row = conn.execute(
            "INSERT INTO import_uploads (school_id, kind, sha256, filename, data, uploaded_by)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (school, kind, hashlib.sha256(data).digest(), name[:200], data, user.user_id),
        ).fetchone()
        assert row is not None
        upload = {"id": row[0], "sha256": hashlib.sha256(data).hexdigest(),
                  "expect": fingerprint(run.plan), "name": name}  # fmt: skip
    return _page(request, conn, user, lang, run=run, rows=_rows(lang, run),
                 sum=summary(run.plan), upload=upload, filename=name, **form)  # fmt: skip


@router.post("/import/apply")
def apply(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    upload_id: Annotated[int, Form(ge=1, le=2**63 - 1)],
    sha256: Annotated[str, Form(max_length=64)] = "",
    expect: Annotated[str, Form(max_length=64)] = "",
    create_classes: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    require_role(user, IMPORTERS)
    lang = _lang(request, conn, user)
    row = conn.execute(
        "SELECT school_id, kind, sha256, filename, data, applied_at IS NOT NULL"
        " FROM import_uploads WHERE id = %s FOR UPDATE",
        (upload_id,),
    ).fetchone()
    try:
        if row is None:
            raise NotFound("no such upload")
        scope.require_school(conn, user, row[0])  # another school's upload is not found
    except NotFound:
        return render(request, "not_found.html", lang, status_code=404, user=user,
                      nav=_nav(user))  # fmt: skip
    school, kind, digest, name, data, applied = row
    if applied:  # a second click on "Apply": the first one's result
        return RedirectResponse(f"/import/{upload_id}", status_code=303)
    form: dict[str, Any] = {"school": school, "kind": kind,
                            "create_classes": create_classes == "1"}  # fmt: skip
    if bytes(digest).hex() != sha256:
        return _page(request, conn, user, lang, **form,
                     error=i18n.gettext(lang, N_("This is not the file that was checked:"
                                                 " check the file again.")))  # fmt: skip
    run = run_import(conn, user, school, kind, bytes(data), name, False, form["create_classes"],
                     expect=lambda plan: fingerprint(plan) == expect)  # fmt: skip
    if not run.applied:
        # the school's data changed since the check: show the new check, nothing was applied
        upload = None
        if not run.plan.errors:
            upload = {"id": upload_id, "sha256": sha256, "expect": fingerprint(run.plan),
                      "name": name}  # fmt: skip
        notice = i18n.gettext(lang, N_("The school's data changed since the check, so nothing"
                                       " was imported. Here is the check again."))  # fmt: skip
        return _page(request, conn, user, lang, run=run, rows=_rows(lang, run), notice=notice,
                     sum=summary(run.plan), upload=upload, filename=name, **form)  # fmt: skip
    result = {"kind": kind, "file": name, **summary(run.plan),
              "create": run.plan.would_create(), "update": run.plan.would_update()}  # fmt: skip
    conn.execute(
        "UPDATE import_uploads SET applied_at = now(), result = %s, data = ''::bytea WHERE id = %s",
        (json.dumps(result), upload_id),
    )
    return RedirectResponse(f"/import/{upload_id}", status_code=303)


@router.get("/import/{upload_id}")
def done(request: Request, conn: ConnDep, user: ConsoleUser, upload_id: IdPath) -> Response:
    require_role(user, IMPORTERS)
    lang = _lang(request, conn, user)
    row = conn.execute(
        "SELECT school_id, result, applied_at FROM import_uploads"
        " WHERE id = %s AND applied_at IS NOT NULL",
        (upload_id,),
    ).fetchone()
    try:
        if row is None:
            raise NotFound("no such import")
        scope.require_school(conn, user, row[0])
    except NotFound:
        return render(request, "not_found.html", lang, status_code=404, user=user,
                      nav=_nav(user))  # fmt: skip
    return render(request, "import_done.html", lang, user=user, nav=_nav(user), result=row[1],
                  applied_at=row[2], KINDS=KINDS)  # fmt: skip
