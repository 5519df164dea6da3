"""Database errors the request models could not see, as answers a client can act on.

The transaction was rolled back, so nothing changed. The answer names the field (a column of
the request's body, read from the error's diagnostics) and what is wrong with it, never a
constraint, table, SQL text or another record's value: those are internals, and a value in a
constraint's detail may belong to a record the caller may not see (issue #13 item 14).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from fastapi.responses import JSONResponse

log = logging.getLogger("qadam.api")

_KEY_COLUMNS = re.compile(r"^Key \(([^)]*)\)=")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _columns(diag: Any) -> list[str]:
    """The columns a unique or foreign-key error names (``Key (a, b)=(...)``), values left out."""
    m = _KEY_COLUMNS.match(getattr(diag, "message_detail", None) or "")
    if m is None:
        return []
    cols = [c.strip() for c in m.group(1).split(",")]
    return cols if all(_FIELD.match(c) for c in cols) else []


def _check_column(diag: Any) -> str | None:
    """The column of a single-column CHECK named ``<table>_<column>_check`` (PostgreSQL's own
    naming for a column constraint), else None."""
    table = getattr(diag, "table_name", None) or ""
    name = getattr(diag, "constraint_name", None) or ""
    prefix, suffix = table + "_", "_check"
    if table and name.startswith(prefix) and name.endswith(suffix):
        col = name[len(prefix) : -len(suffix)]
        if _FIELD.match(col):
            return col
    return None


def _invalid(field: str | None, msg: str) -> JSONResponse:
    loc = ["body"] if field is None else ["body", field]
    return JSONResponse(
        {"detail": [{"type": "value_error", "loc": loc, "msg": msg}]}, status_code=422
    )


def response_for(exc: psycopg.Error) -> JSONResponse:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or ""
    # logged for the operator (a constraint name helps there), never sent to the client
    log.info(
        "request refused by the database error=%s constraint=%s",
        type(exc).__name__,
        getattr(diag, "constraint_name", None),
    )
    if isinstance(exc, psycopg.errors.UniqueViolation):
        cols = _columns(diag)
        what = f" with this {' and '.join(cols)}" if cols else " with these values"
        return JSONResponse({"detail": f"a record{what} already exists"}, status_code=409)
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        if primary.startswith("update or delete"):
            return JSONResponse(
                {"detail": "still referenced by other records: remove or move them first"},
                status_code=409,
            )
        cols = _columns(diag)
        field = cols[0] if len(cols) == 1 else None
        return _invalid(field, f"{' and '.join(cols) or 'a reference'} refers to a missing record")
    if isinstance(exc, psycopg.errors.NotNullViolation):
        col = getattr(diag, "column_name", None)
        field = col if col and _FIELD.match(col) else None
        return _invalid(field, f"{field or 'a value'} is required")
    if isinstance(exc, psycopg.errors.CheckViolation):
        col = _check_column(diag)
        return _invalid(col, f"{col or 'a value'} is not allowed here (see docs/api.md)")
    if isinstance(exc, psycopg.errors.IntegrityError):
        return _invalid(None, "the values conflict with other records (see docs/api.md)")
    if isinstance(exc, psycopg.errors.NumericValueOutOfRange):
        return _invalid(None, "a number is out of range")
    if isinstance(exc, psycopg.errors.StringDataRightTruncation):
        return _invalid(None, "a text is too long")
    if isinstance(exc, psycopg.DataError):
        return _invalid(None, "a value has the wrong form or is out of range")
    log.error("database error error=%s", type(exc).__name__)
    return JSONResponse({"detail": "database error"}, status_code=503)
