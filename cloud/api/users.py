"""``/api/v1/users``: accounts of every role (guardians included)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, Field, StrictInt, StringConstraints

from cloud.api.deps import ConnDep, PageDep, UserManager
from cloud.api.models import BIGINT_MAX, Input, Name, Page, SchoolId, clean, page_of, text
from cloud.auth.passwords import hash_password
from cloud.auth.principal import Role
from cloud.domain import store
from cloud.domain.errors import Forbidden

Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$"),
    AfterValidator(clean),
]

router = APIRouter(prefix="/api/v1", tags=["users"])

# roles a school admin may create, always inside their own school (guardians have no school)
SCHOOL_ADMIN_CREATES = ("canteen_operator", "technician", "guardian")


class UserIn(Input):
    email: Email
    password: text(10, 1024)  # type: ignore[valid-type]
    full_name: Name = ""
    role: Role
    district_id: StrictInt | None = Field(default=None, ge=1, le=BIGINT_MAX)
    school_id: SchoolId | None = None


class UserOut(BaseModel):
    id: int
    email: str
    full_name: str
    role: Role
    district_id: int | None
    school_id: str | None
    active: bool
    created_at: datetime


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(conn: ConnDep, p: UserManager, body: UserIn) -> UserOut:
    """Platform admins create any account; a school admin creates canteen operators and
    technicians of their own school, and guardians."""
    if p.role == "school_admin":
        if body.role not in SCHOOL_ADMIN_CREATES or body.district_id is not None:
            raise Forbidden(f"a school admin may create only {', '.join(SCHOOL_ADMIN_CREATES)}")
        if body.role != "guardian" and body.school_id != p.school_id:
            raise Forbidden("a school admin creates staff of their own school only")
    values = body.model_dump(exclude={"password"})
    values["email"] = body.email.lower()
    values["password_hash"] = hash_password(body.password)
    # the school that may later link this guardian to its pupils (D24-D)
    values["created_by_school"] = p.school_id if p.role == "school_admin" else None
    row = store.insert(conn, p, "users", values, school_id=values["created_by_school"])
    return UserOut.model_validate(row)


@router.get("/users", response_model=Page[UserOut])
def list_users(
    conn: ConnDep,
    p: UserManager,
    pg: PageDep,
    role: Role | None = None,
    email: Annotated[str | None, Query(min_length=1, max_length=254)] = None,
) -> Page[UserOut]:
    """School admins see their school's staff, the guardians of their school's pupils and the
    guardians their school created (not yet linked)."""
    where: list[tuple[str, object]] = [("t.role = %s", role), ("t.email = lower(%s)", email)]
    if p.role == "school_admin":
        where.append(
            (
                "(t.school_id = %s OR (t.role = 'guardian' AND t.created_by_school = %s)"
                " OR t.id IN (SELECT g.guardian_id FROM guardian_students g"
                " JOIN people pe ON pe.id = g.person_id WHERE pe.school_id = %s))",
                (p.school_id, p.school_id, p.school_id),
            )
        )
    total, rows = store.page(conn, "users", where, limit=pg.limit, offset=pg.offset)
    return page_of(UserOut, total, pg.limit, pg.offset, rows)
