"""A person's data on request (issue #18, D28-K): the export of everything held about them and
its erasure. The school that holds the data answers the request: school admins for their
school's people, platform operators for any; a person outside the scope is 404."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from cloud.api.deps import ConnDep, SchoolAdmin
from cloud.api.models import IdPath
from cloud.auth import scope
from cloud.domain import subject_data

router = APIRouter(prefix="/api/v1", tags=["people"])


@router.get("/people/{person_id}/export", response_model=None)
def export_person(conn: ConnDep, p: SchoolAdmin, person_id: IdPath) -> Response:
    """Every row about the person, table by table, as a JSON file (audited)."""
    scope.require_person(conn, p, person_id)
    doc = subject_data.export(conn, p, person_id)
    body = json.dumps(doc, ensure_ascii=False, indent=1, default=str)
    return Response(
        body,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="person-{person_id}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/people/{person_id}/erase")
def erase_person(conn: ConnDep, p: SchoolAdmin, person_id: IdPath) -> dict[str, Any]:
    """Delete the person's cards, guardian links, restrictions, consents and ratings and blank
    their name, keeping the counted facts (taps, meals, money) under their bare number.
    Refused (409) for a person still active or already erased. Cannot be undone."""
    scope.require_person(conn, p, person_id)
    return subject_data.erase(conn, p, person_id)
