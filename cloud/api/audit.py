"""``/api/v1/audit``: the audit log (every change made through the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from cloud.api.deps import AuditReader, ConnDep, PageDep
from cloud.api.models import BIGINT_MAX, Page, page_of
from cloud.domain import store
from cloud.domain.audit_log import school_of

router = APIRouter(prefix="/api/v1", tags=["audit"])


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor_id: int | None
    actor: str
    action: str
    entity: str
    entity_id: str
    school_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@router.get("/audit", response_model=Page[AuditOut])
def list_audit(
    conn: ConnDep,
    p: AuditReader,
    pg: PageDep,
    entity: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    entity_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    actor: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
) -> Page[AuditOut]:
    """Newest first. A school admin sees the changes to their own school's records."""
    where: list[tuple[str, object]] = [
        ("t.entity = %s", entity),
        ("t.entity_id = %s", entity_id),
        ("t.actor_id = %s", actor),
        ("t.school_id = %s", school_of(p)),
    ]
    total, rows = store.page(
        conn, "audit_log", where, order="id DESC", limit=pg.limit, offset=pg.offset
    )
    return page_of(AuditOut, total, pg.limit, pg.offset, rows)
