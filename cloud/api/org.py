"""``/api/v1``: regions, districts, schools and classes."""

from __future__ import annotations

import secrets
from datetime import datetime, time
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator, BaseModel, Field, StrictInt, field_validator

from cloud.api.deps import (
    ClassReader,
    ConnDep,
    OrgReader,
    PageDep,
    PlatformAdmin,
    SchoolAdmin,
    SchoolReader,
)
from cloud.api.models import BIGINT_MAX, IdPath, Input, Name, Page, SchoolId, page_of, text
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import formats, kz_bin, store
from cloud.domain.errors import Forbidden, NotFound

router = APIRouter(prefix="/api/v1")

RefId = Annotated[StrictInt, Field(ge=1, le=BIGINT_MAX)]
SchoolPath = Annotated[str, Path(min_length=1, max_length=64)]
SchoolQuery = Annotated[str | None, Query(min_length=1, max_length=64)]


# ---- regions ------------------------------------------------------------------------------
class RegionIn(Input):
    name: Name


class RegionOut(BaseModel):
    id: int
    name: str
    created_at: datetime


def _region_scope(conn: ConnDep, p: Principal) -> int | None:
    """The one region a district authority sees; None = all."""
    if p.role == "platform_admin":
        return None
    row = conn.execute("SELECT region_id FROM districts WHERE id = %s", (p.district_id,)).fetchone()
    return int(row[0]) if row else -1


@router.get("/regions", response_model=Page[RegionOut], tags=["organisation"])
def list_regions(conn: ConnDep, p: OrgReader, pg: PageDep) -> Page[RegionOut]:
    total, rows = store.page(
        conn, "regions", [("t.id = %s", _region_scope(conn, p))], limit=pg.limit, offset=pg.offset
    )
    return page_of(RegionOut, total, pg.limit, pg.offset, rows)


@router.post("/regions", response_model=RegionOut, status_code=201, tags=["organisation"])
def create_region(conn: ConnDep, p: PlatformAdmin, body: RegionIn) -> RegionOut:
    return RegionOut.model_validate(store.insert(conn, p, "regions", body.model_dump()))


@router.get("/regions/{region_id}", response_model=RegionOut, tags=["organisation"])
def get_region(conn: ConnDep, p: OrgReader, region_id: IdPath) -> RegionOut:
    allowed = _region_scope(conn, p)
    if allowed is not None and allowed != region_id:
        raise NotFound(f"region {region_id} not found")
    return RegionOut.model_validate(store.get(conn, "regions", region_id))


@router.patch("/regions/{region_id}", response_model=RegionOut, tags=["organisation"])
def update_region(conn: ConnDep, p: PlatformAdmin, region_id: IdPath, body: RegionIn) -> RegionOut:
    return RegionOut.model_validate(store.update(conn, p, "regions", region_id, body.model_dump()))


@router.delete("/regions/{region_id}", status_code=204, tags=["organisation"])
def delete_region(conn: ConnDep, p: PlatformAdmin, region_id: IdPath) -> None:
    store.delete(conn, p, "regions", region_id)


# ---- districts ----------------------------------------------------------------------------
class DistrictIn(Input):
    region_id: RefId
    name: Name


class DistrictPatch(Input):
    name: Name


class DistrictOut(BaseModel):
    id: int
    region_id: int
    name: str
    created_at: datetime


@router.get("/districts", response_model=Page[DistrictOut], tags=["organisation"])
def list_districts(
    conn: ConnDep,
    p: OrgReader,
    pg: PageDep,
    region: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
) -> Page[DistrictOut]:
    own = None if p.role == "platform_admin" else p.district_id
    total, rows = store.page(
        conn,
        "districts",
        [("t.region_id = %s", region), ("t.id = %s", own)],
        limit=pg.limit,
        offset=pg.offset,
    )
    return page_of(DistrictOut, total, pg.limit, pg.offset, rows)


@router.post("/districts", response_model=DistrictOut, status_code=201, tags=["organisation"])
def create_district(conn: ConnDep, p: PlatformAdmin, body: DistrictIn) -> DistrictOut:
    return DistrictOut.model_validate(store.insert(conn, p, "districts", body.model_dump()))


@router.get("/districts/{district_id}", response_model=DistrictOut, tags=["organisation"])
def get_district(conn: ConnDep, p: OrgReader, district_id: IdPath) -> DistrictOut:
    if p.role != "platform_admin" and p.district_id != district_id:
        raise NotFound(f"district {district_id} not found")
    return DistrictOut.model_validate(store.get(conn, "districts", district_id))


@router.patch("/districts/{district_id}", response_model=DistrictOut, tags=["organisation"])
def update_district(
    conn: ConnDep, p: PlatformAdmin, district_id: IdPath, body: DistrictPatch
) -> DistrictOut:
    row = store.update(conn, p, "districts", district_id, body.model_dump())
    return DistrictOut.model_validate(row)


@router.delete("/districts/{district_id}", status_code=204, tags=["organisation"])
def delete_district(conn: ConnDep, p: PlatformAdmin, district_id: IdPath) -> None:
    store.delete(conn, p, "districts", district_id)


# ---- schools ------------------------------------------------------------------------------
TimeZone = Annotated[
    str,
    Field(max_length=64, description="IANA time zone name", examples=["Asia/Almaty"]),
    AfterValidator(formats.check_time_zone),
]
DayTime = Annotated[
    str,
    Field(max_length=5, description="HH:MM", examples=["08:30"]),
    AfterValidator(formats.check_day_time),
]
# The school's business identification number, as the Social Wallet knows it (12 digits with
# a check digit: cloud/domain/kz_bin.py; D24-F).
Bin = Annotated[
    str,
    Field(description="BIN: 12 digits with a check digit", examples=["940140000385"]),
    AfterValidator(kz_bin.check),
]


class SchoolIn(Input):
    id: SchoolId
    name: Name
    district_id: RefId | None = None
    timezone: TimeZone = "Asia/Almaty"
    day_start: DayTime = Field(default="08:30", description="lessons start (lateness): HH:MM")
    bin: Bin | None = None


class SchoolPatch(Input):
    name: Name | None = None
    district_id: RefId | None = None
    timezone: TimeZone | None = None
    day_start: DayTime | None = Field(default=None, description="lessons start: HH:MM")
    bin: Bin | None = Field(default=None, description="BIN; null clears it")


# What a school admin may change of their own school; the rest is the platform admin's.
SCHOOL_ADMIN_FIELDS = frozenset({"name", "day_start", "bin"})


class SchoolOut(BaseModel):
    id: str
    name: str
    district_id: int | None
    timezone: str
    day_start: str
    bin: str | None = None
    created_at: datetime

    @field_validator("day_start", mode="before")
    @classmethod
    def _hhmm(cls, value: object) -> object:
        return value.strftime("%H:%M") if isinstance(value, time) else value


def _school_where(conn: ConnDep, p: Principal) -> list[tuple[str, object]]:
    ids = scope.school_ids(conn, p)
    return [] if ids is None else [("t.id = ANY(%s)", ids)]


@router.get("/schools", response_model=Page[SchoolOut], tags=["organisation"])
def list_schools(
    conn: ConnDep,
    p: SchoolReader,
    pg: PageDep,
    district: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
) -> Page[SchoolOut]:
    where = [*_school_where(conn, p), ("t.district_id = %s", district)]
    total, rows = store.page(conn, "schools", where, limit=pg.limit, offset=pg.offset)
    return page_of(SchoolOut, total, pg.limit, pg.offset, rows)


@router.post("/schools", response_model=SchoolOut, status_code=201, tags=["organisation"])
def create_school(conn: ConnDep, p: PlatformAdmin, body: SchoolIn) -> SchoolOut:
    """The school's card-key secret (site_key) is generated here and never returned."""
    values = {**body.model_dump(), "site_key": secrets.token_bytes(32)}
    row = store.insert(conn, p, "schools", values, school_id=body.id)
    return SchoolOut.model_validate(row)


@router.get("/schools/{school_id}", response_model=SchoolOut, tags=["organisation"])
def get_school(conn: ConnDep, p: SchoolReader, school_id: SchoolPath) -> SchoolOut:
    scope.require_school(conn, p, school_id)
    return SchoolOut.model_validate(store.get(conn, "schools", school_id))


@router.patch("/schools/{school_id}", response_model=SchoolOut, tags=["organisation"])
def update_school(
    conn: ConnDep, p: SchoolAdmin, school_id: SchoolPath, body: SchoolPatch
) -> SchoolOut:
    """A school admin may rename their school and set its day start; district and time zone:
    platform admin only (403 naming the fields, nothing changed)."""
    scope.require_school(conn, p, school_id)
    values = body.model_dump(exclude_unset=True)
    if p.role != "platform_admin":
        others = sorted(set(values) - SCHOOL_ADMIN_FIELDS)
        if others:
            raise Forbidden(f"only a platform admin may change {', '.join(others)}")
    values = {k: v for k, v in values.items() if v is not None or k in ("district_id", "bin")}
    row = store.update(conn, p, "schools", school_id, values, school_id=school_id)
    return SchoolOut.model_validate(row)


# ---- classes ------------------------------------------------------------------------------
class ClassIn(Input):
    school_id: SchoolId
    name: text(1, 50)  # type: ignore[valid-type]
    grade: StrictInt | None = Field(default=None, ge=0, le=12)


class ClassPatch(Input):
    name: text(1, 50) | None = None  # type: ignore[valid-type]
    grade: StrictInt | None = Field(default=None, ge=0, le=12)


class ClassOut(BaseModel):
    id: int
    school_id: str
    name: str
    grade: int | None
    created_at: datetime


def _class_in_scope(conn: ConnDep, p: Principal, class_id: int) -> None:
    row = store.get(conn, "classes", class_id)
    try:
        scope.require_school(conn, p, row["school_id"])
    except NotFound:
        raise NotFound(f"class {class_id} not found") from None


@router.get("/classes", response_model=Page[ClassOut], tags=["organisation"])
def list_classes(
    conn: ConnDep, p: ClassReader, pg: PageDep, school: SchoolQuery = None
) -> Page[ClassOut]:
    ids = scope.school_ids(conn, p)
    where = [("t.school_id = ANY(%s)", ids), ("t.school_id = %s", school)]
    total, rows = store.page(
        conn, "classes", where, order="school_id, name", limit=pg.limit, offset=pg.offset
    )
    return page_of(ClassOut, total, pg.limit, pg.offset, rows)


@router.post("/classes", response_model=ClassOut, status_code=201, tags=["organisation"])
def create_class(conn: ConnDep, p: SchoolAdmin, body: ClassIn) -> ClassOut:
    scope.require_school(conn, p, body.school_id)
    return ClassOut.model_validate(store.insert(conn, p, "classes", body.model_dump()))


@router.get("/classes/{class_id}", response_model=ClassOut, tags=["organisation"])
def get_class(conn: ConnDep, p: ClassReader, class_id: IdPath) -> ClassOut:
    _class_in_scope(conn, p, class_id)
    return ClassOut.model_validate(store.get(conn, "classes", class_id))


@router.patch("/classes/{class_id}", response_model=ClassOut, tags=["organisation"])
def update_class(conn: ConnDep, p: SchoolAdmin, class_id: IdPath, body: ClassPatch) -> ClassOut:
    _class_in_scope(conn, p, class_id)
    values = body.model_dump(exclude_unset=True)
    if values.get("name", "") is None:
        del values["name"]
    return ClassOut.model_validate(store.update(conn, p, "classes", class_id, values))


@router.delete("/classes/{class_id}", status_code=204, tags=["organisation"])
def delete_class(conn: ConnDep, p: SchoolAdmin, class_id: IdPath) -> None:
    _class_in_scope(conn, p, class_id)
    store.delete(conn, p, "classes", class_id)
