"""``/api/v1/whitelists/{school}`` (the newest published list) and ``/api/v1/devices/drift``
(which whitelist each board runs against the newest one). Scoped like the devices."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from psycopg.rows import dict_row
from pydantic import BaseModel

from cloud.api.deps import ConnDep, DeviceReader, PageDep
from cloud.api.models import Page
from cloud.auth import scope
from cloud.domain.errors import NotFound

router = APIRouter(prefix="/api/v1", tags=["whitelists"])

SchoolPath = Annotated[str, Path(min_length=1, max_length=64)]


class WhitelistOut(BaseModel):
    school_id: str
    version: int
    count: int
    crc: int
    size: int
    created_at: datetime
    versions_kept: list[int]


class DriftOut(BaseModel):
    device_id: str
    school_id: str
    running: int | None  # the version the board last reported (None: never seen)
    latest: int | None  # the school's newest list (None: none compiled yet)
    in_sync: bool
    online: bool
    last_seen: datetime | None
    wl_err: str | None
    # canteen boards (D15): the balance push version the board runs and the school's current
    # one; None on other boards
    bal_running: int | None = None
    bal_latest: int | None = None
    bal_in_sync: bool | None = None
    bal_err: str | None = None


@router.get("/whitelists/{school_id}", response_model=WhitelistOut)
def get_whitelist(conn: ConnDep, p: DeviceReader, school_id: SchoolPath) -> WhitelistOut:
    scope.require_school(conn, p, school_id)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT version, count, crc, length(bytes) AS size, created_at FROM whitelists"
            " WHERE school_id = %s ORDER BY version DESC",
            (school_id,),
        ).fetchall()
    if not rows:
        raise NotFound(f"no whitelist has been compiled for school {school_id!r} yet")
    return WhitelistOut(
        school_id=school_id, versions_kept=[int(r["version"]) for r in rows], **rows[0]
    )


@router.get("/devices/drift", response_model=Page[DriftOut])
def device_drift(
    conn: ConnDep,
    p: DeviceReader,
    pg: PageDep,
    school: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    only_drifting: bool = False,
) -> Page[DriftOut]:
    conds = ["TRUE"]
    params: list[Any] = []
    ids = scope.school_ids(conn, p)
    if ids is not None:
        conds.append("d.school_id = ANY(%s)")
        params.append(ids)
    if school is not None:
        conds.append("d.school_id = %s")
        params.append(school)
    if only_drifting:
        conds.append("s.wl_version IS DISTINCT FROM w.version")
    query = (
        "SELECT d.id AS device_id, d.school_id, s.wl_version AS running, w.version AS latest,"
        " COALESCE(s.online, false) AS online, s.last_seen, s.status->>'wl_err' AS wl_err,"
        " CASE WHEN s.status->>'bal' ~ '^[0-9]{1,10}$' THEN (s.status->>'bal')::bigint END"
        "   AS bal_running,"
        " CASE WHEN d.mode = 'canteen' OR d.reader = 'canteen' OR s.status ? 'bal'"
        "   THEN COALESCE(bp.version, 0) END AS bal_latest,"
        " s.status->>'bal_err' AS bal_err"
        " FROM devices d LEFT JOIN device_status s ON s.device_id = d.id"
        " LEFT JOIN balance_push_state bp ON bp.school_id = d.school_id"
        " LEFT JOIN LATERAL (SELECT max(version) AS version FROM whitelists"
        "   WHERE school_id = d.school_id) w ON true"
        " WHERE " + " AND ".join(conds)
    )
    with conn.cursor(row_factory=dict_row) as cur:
        count = cur.execute(f"SELECT count(*) AS n FROM ({query}) q", params).fetchone()  # type: ignore[arg-type]
        rows = cur.execute(
            query + " ORDER BY d.id LIMIT %s OFFSET %s",  # type: ignore[arg-type]
            [*params, pg.limit, pg.offset],
        ).fetchall()
    items = [
        DriftOut(
            **r,
            in_sync=r["running"] is not None and r["running"] == r["latest"],
            bal_in_sync=None if r["bal_latest"] is None else r["bal_running"] == r["bal_latest"],
        )
        for r in rows
    ]
    total = int(count["n"]) if count else 0
    return Page[DriftOut](total=total, limit=pg.limit, offset=pg.offset, items=items)
