"""``/api/v1/ota``: releases, rollouts and the fleet's firmware (docs/ota.md, D27-B).

Platform admins publish a release (the image and the signature ``qadam release`` made; the API
checks it against the configured public key and never signs anything), start a rollout (devices,
canaries, canary deadline), pause and resume it. The fleet view (each board's reported version,
slot, trial and its newest rollout's state) is for whoever may read the devices, within their
scope. Every change is audited.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, DeviceReader, PlatformAdmin, SettingsDep
from cloud.api.models import Input
from cloud.auth import scope
from cloud.domain import store
from cloud.domain.errors import Invalid
from cloud.ota import releases, rollouts

router = APIRouter(prefix="/api/v1/ota", tags=["ota"])
RolloutPath = Annotated[int, Path(ge=1, le=2**63 - 1)]


class ReleaseIn(Input):
    version: str = Field(min_length=1, max_length=32)
    image_b64: str = Field(min_length=1, max_length=2 * releases.MAX_SIZE,
                           description="the image (qadam release build), base64")  # fmt: skip
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(pattern=r"^[0-9a-f]{128}$", description="Ed25519, hex")
    notes: str = Field(default="", max_length=2000)


class ReleaseOut(BaseModel):
    id: int
    version: str
    size: int
    sha256: str
    signature: str
    notes: str
    created_by: str
    created_at: datetime


class RolloutIn(Input):
    version: str = Field(min_length=1, max_length=32)
    devices: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]] = Field(
        min_length=1, max_length=100_000
    )
    canaries: list[str] = Field(default_factory=list, max_length=1000)
    canary_deadline_s: int | None = Field(default=None, ge=10, le=604_800)


class PauseIn(Input):
    reason: str = Field(default="paused by an operator", min_length=1, max_length=500)


class TargetOut(BaseModel):
    device_id: str
    canary: bool
    state: str
    detail: str | None
    offered_at: datetime | None
    updated_at: datetime


class RolloutOut(BaseModel):
    id: int
    release_id: int
    version: str
    state: str
    stage: str
    canary_deadline_s: int
    stage_started_at: datetime
    paused_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    targets: list[TargetOut]


class FleetRow(BaseModel):
    device_id: str
    school_id: str
    version: str | None
    slot: str | None
    trial: int | None
    rolled_back: str | None
    ota: dict[str, Any] | None
    online: bool
    updated_at: datetime | None
    rollout_id: int | None
    rollout_version: str | None
    rollout_state: str | None
    target_state: str | None
    canary: bool | None
    detail: str | None


@router.post("/releases", response_model=ReleaseOut, status_code=201)
def publish_release(
    conn: ConnDep, p: PlatformAdmin, settings: SettingsDep, body: ReleaseIn
) -> ReleaseOut:
    """Store a signed release. 422 unless its size, sha256 and signature (by the release key
    whose public half the cloud is configured with) match; 409 if the version exists."""
    try:
        image = base64.b64decode(body.image_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("image_b64", "not base64") from None
    row = releases.publish(conn, settings.ota_public_key, body.version, image, body.sha256,
                           body.signature, body.notes, p.label)  # fmt: skip
    store.audit(conn, p, "create", "ota_releases", row["id"], None, row)
    return ReleaseOut.model_validate(row)


@router.get("/releases", response_model=list[ReleaseOut])
def list_releases(conn: ConnDep, p: PlatformAdmin) -> list[ReleaseOut]:
    return [ReleaseOut.model_validate(r) for r in releases.list_releases(conn)]


@router.post("/rollouts", response_model=RolloutOut, status_code=201)
def start_rollout(
    conn: ConnDep, p: PlatformAdmin, settings: SettingsDep, body: RolloutIn
) -> RolloutOut:
    """Offer a release to the devices: the canaries first, the rest once every canary confirmed
    it; paused by itself when a canary rolls back, fails or misses the deadline."""
    deadline = body.canary_deadline_s or settings.ota_canary_deadline_s
    r = rollouts.create(conn, body.version, body.devices, body.canaries, deadline, p.label)
    store.audit(conn, p, "create", "ota_rollouts", r["id"], None,
                {k: v for k, v in r.items() if k != "targets"} | {"devices": body.devices,
                                                                  "canaries": body.canaries})
    return RolloutOut.model_validate(r)


@router.get("/rollouts/{rollout_id}", response_model=RolloutOut)
def get_rollout(conn: ConnDep, p: PlatformAdmin, rollout_id: RolloutPath) -> RolloutOut:
    return RolloutOut.model_validate(rollouts.get(conn, rollout_id))


@router.post("/rollouts/{rollout_id}/pause", response_model=RolloutOut)
def pause_rollout(
    conn: ConnDep, p: PlatformAdmin, rollout_id: RolloutPath, body: PauseIn
) -> RolloutOut:
    r = rollouts.pause(conn, rollout_id, body.reason)
    store.audit(conn, p, "update", "ota_rollouts", rollout_id, None,
                {"state": "paused", "reason": body.reason})
    return RolloutOut.model_validate(r)


@router.post("/rollouts/{rollout_id}/resume", response_model=RolloutOut)
def resume_rollout(conn: ConnDep, p: PlatformAdmin, rollout_id: RolloutPath) -> RolloutOut:
    r = rollouts.resume(conn, rollout_id)
    store.audit(conn, p, "update", "ota_rollouts", rollout_id, {"state": "paused"},
                {"state": r["state"]})
    return RolloutOut.model_validate(r)


@router.post("/rollouts/{rollout_id}/cancel", response_model=RolloutOut)
def cancel_rollout(
    conn: ConnDep, p: PlatformAdmin, rollout_id: RolloutPath, body: PauseIn
) -> RolloutOut:
    """End the rollout: the boards it has not offered the release yet never get it (e.g. after
    a canary rolled a bad release back), so they can be put in the next one."""
    r = rollouts.cancel(conn, rollout_id, body.reason)
    store.audit(conn, p, "update", "ota_rollouts", rollout_id, None,
                {"state": "cancelled", "reason": body.reason})
    return RolloutOut.model_validate(r)


@router.get("/fleet", response_model=list[FleetRow])
def fleet(
    conn: ConnDep, p: DeviceReader, school_id: Annotated[str | None, Query()] = None
) -> list[FleetRow]:
    """Every device in the caller's scope (or of one school): the firmware it reports (version,
    slot, trial boots left, a release it rolled back) and its newest rollout's state."""
    ids = scope.school_ids(conn, p)
    if school_id is not None:
        ids = [school_id] if ids is None or school_id in ids else []
    return [FleetRow.model_validate(r) for r in rollouts.fleet(conn, ids)]
