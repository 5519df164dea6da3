"""``/api/v1/consents``: guardians' consent to alternative identification (face, fingerprint,
...). Cards always remain available; a consent can be withdrawn at any time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StrictInt

from cloud.api.deps import ConnDep, ConsentKeeper, PageDep
from cloud.api.models import BIGINT_MAX, IdPath, Input, Page, page_of
from cloud.auth import scope
from cloud.domain import store
from cloud.domain.errors import Conflict, Invalid, NotFound

router = APIRouter(prefix="/api/v1", tags=["consents"])

Method = Literal["face", "fingerprint", "palm", "qr", "pin"]


class ConsentIn(Input):
    person_id: StrictInt = Field(ge=1, le=BIGINT_MAX)
    method: Method
    guardian_id: StrictInt | None = Field(
        default=None,
        ge=1,
        le=BIGINT_MAX,
        description="who consented; a guardian recording their own consent leaves it out, "
        "staff recording a signed paper form must name the guardian",
    )


class ConsentOut(BaseModel):
    id: int
    person_id: int
    method: Method
    granted_by: int
    granted_at: datetime
    withdrawn_at: datetime | None
    withdrawn_by: int | None


@router.get("/consents", response_model=Page[ConsentOut])
def list_consents(
    conn: ConnDep,
    p: ConsentKeeper,
    pg: PageDep,
    person: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    live: Annotated[bool | None, Query(description="true: not withdrawn")] = None,
) -> Page[ConsentOut]:
    where: list[tuple[str, object]] = [("t.person_id = %s", person)]
    if live is not None:
        where.append(("(t.withdrawn_at IS NULL) = %s", live))
    if p.role == "guardian":
        where.append(("t.person_id = ANY(%s)", scope.child_ids(conn, p)))
    else:
        where.append(
            (
                "t.person_id IN (SELECT id FROM people WHERE school_id = ANY(%s))",
                scope.school_ids(conn, p),
            )
        )
    total, rows = store.page(
        conn,
        "consents",
        where,
        order="granted_at DESC, id DESC",
        limit=pg.limit,
        offset=pg.offset,
    )
    return page_of(ConsentOut, total, pg.limit, pg.offset, rows)


@router.post("/consents", response_model=ConsentOut, status_code=201)
def record_consent(conn: ConnDep, p: ConsentKeeper, body: ConsentIn) -> ConsentOut:
    school = scope.require_person(conn, p, body.person_id)
    if p.role == "guardian":
        if body.guardian_id not in (None, p.user_id):
            raise Invalid("guardian_id", "a guardian records their own consent only")
        guardian = p.user_id
    else:
        if body.guardian_id is None:
            raise Invalid("guardian_id", "name the guardian who signed the consent")
        guardian = body.guardian_id
    linked = conn.execute(
        "SELECT 1 FROM guardian_students WHERE guardian_id = %s AND person_id = %s",
        (guardian, body.person_id),
    ).fetchone()
    if not linked:
        raise Invalid("guardian_id", f"user {guardian} is not a guardian of this person")
    live = conn.execute(
        "SELECT 1 FROM consents WHERE person_id = %s AND method = %s AND withdrawn_at IS NULL",
        (body.person_id, body.method),
    ).fetchone()
    if live:
        raise Conflict(f"a consent for {body.method} is already on record")
    row = store.insert(
        conn, p, "consents",
        {"person_id": body.person_id, "method": body.method, "granted_by": guardian},
        school_id=school,
    )  # fmt: skip
    return ConsentOut.model_validate(row)


@router.post("/consents/{consent_id}/withdraw", response_model=ConsentOut)
def withdraw_consent(conn: ConnDep, p: ConsentKeeper, consent_id: IdPath) -> ConsentOut:
    row = store.get(conn, "consents", consent_id)
    try:
        school = scope.require_person(conn, p, int(row["person_id"]))
    except NotFound:
        raise NotFound(f"consent {consent_id} not found") from None
    if row["withdrawn_at"] is not None:
        raise Conflict(f"consent {consent_id} is already withdrawn")
    out = store.update(
        conn, p, "consents", consent_id,
        {"withdrawn_at": datetime.now().astimezone(), "withdrawn_by": p.user_id},
        action="withdraw",
        school_id=school,
    )  # fmt: skip
    return ConsentOut.model_validate(out)
