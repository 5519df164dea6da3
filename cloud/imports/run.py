"""One import of a file: read it, plan it against the school's data and, for a real run, apply
the plan. The API's route (cloud/api/imports.py) and the console's wizard
(cloud/console/importer.py) both call :func:`run_import`, so there is one parser and one set of
rules. Scope is the caller's check (``scope.require_school``), made before this is called."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from cloud.auth.principal import Principal
from cloud.imports.apply import apply_plan
from cloud.imports.columns import Kind
from cloud.imports.plan import Plan, plan_import
from cloud.imports.reader import read_table

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class ImportRun:
    plan: Plan
    format: str  # "xlsx" or "csv <encoding> <delimiter>"
    applied: bool  # False for a dry run, and for a real run with row errors


def run_import(
    conn: Conn,
    p: Principal,
    school_id: str,
    kind: Kind,
    data: bytes,
    filename: str,
    dry_run: bool,
    create_classes: bool = True,
    expect: Callable[[Plan], bool] | None = None,
) -> ImportRun:
    """Raises ``FileProblem`` for a file that cannot be read at all. A real run applies the
    whole plan in the caller's transaction, or nothing when any row is invalid, or (``expect``
    given) when the plan is not the one the caller expects."""
    if not dry_run:
        # one import per school at a time; the plan is made and applied under this lock
        conn.execute("SELECT 1 FROM schools WHERE id = %s FOR UPDATE", (school_id,))
    else:
        # belt and braces: a dry run cannot write, whatever the code below does
        conn.execute("SET LOCAL transaction_read_only = on")
    table = read_table(data)
    fmt = table.format if table.format == "xlsx" else f"csv {table.encoding} {table.delimiter}"
    plan = plan_import(conn, school_id, kind, table, create_classes)
    if dry_run or plan.errors or (expect is not None and not expect(plan)):
        return ImportRun(plan, fmt, applied=False)
    meta = {
        "kind": kind,
        "file": filename[:200],
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": fmt,
    }
    apply_plan(conn, p, plan, meta)
    return ImportRun(plan, fmt, applied=True)
