"""``/api/v1/schools/{id}/learning``: the school's learning resources (D28-O). Students read
their own school's list (the app's "Learning" tab); a school admin replaces it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field, StringConstraints

from cloud.api.deps import ConnDep, allow
from cloud.api.models import Input, Name
from cloud.auth.principal import Principal
from cloud.domain import learning

router = APIRouter(prefix="/api/v1", tags=["learning"])

SchoolPath = Annotated[str, Path(min_length=1, max_length=64)]
LearningReader = Annotated[
    Principal, Depends(allow("platform_admin", "district_authority", "school_admin", "student"))
]
LearningEditor = Annotated[Principal, Depends(allow("platform_admin", "school_admin"))]
# https only: the app opens it on a pupil's phone
Link = Annotated[
    str, StringConstraints(pattern=r"^https://[^\s/?#\x00]+[^\s\x00]*$", max_length=2000)
]


class ResourceIn(Input):
    title: Name  # 1..200 characters, no NUL (cloud/api/models.py)
    url: Link = Field(examples=["https://bilimland.kz/"])


class ResourcesIn(Input):
    resources: list[ResourceIn] = Field(max_length=learning.MAX_RESOURCES)


class ResourceOut(BaseModel):
    title: str
    url: str


@router.get("/schools/{school_id}/learning", response_model=list[ResourceOut])
def get_learning(conn: ConnDep, p: LearningReader, school_id: SchoolPath) -> list[ResourceOut]:
    """The school's learning resources in order (a student: their own school only)."""
    return [ResourceOut(**vars(r)) for r in learning.resources(conn, p, school_id)]


@router.put("/schools/{school_id}/learning", response_model=list[ResourceOut])
def put_learning(
    conn: ConnDep, p: LearningEditor, school_id: SchoolPath, body: ResourcesIn
) -> list[ResourceOut]:
    """Replace the school's whole list (at most 20; [] clears it). Audited."""
    items = [learning.Resource(r.title, r.url) for r in body.resources]
    return [ResourceOut(**vars(r)) for r in learning.replace(conn, p, school_id, items)]
