"""``/api/v1/devices``: the readers of a school (technicians' part of the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field, StringConstraints

from cloud.api.deps import ConnDep, DeviceReader, DeviceWriter, PageDep, SettingsDep
from cloud.api.models import Input, Page, SchoolId, page_of, text
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.provisioning import registration
from cloud.provisioning.dynsec import (
    BrokerAccounts,
    BrokerError,
    NotABoardAccount,
    broker_accounts,
)
from cloud.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["devices"])

DEVICE_ID = r"^[a-z0-9][a-z0-9-]{0,31}$"  # protocol.md, "device id"
DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID)]
DevicePath = Annotated[str, Path(min_length=1, max_length=32)]
Mode = Literal["door", "turnstile", "canteen"]
# The device's placement (migration 0012); each tap still carries its own reader (in/out/canteen).
Direction = Literal["in", "out", "both"]
DIRECTION_DOC = (
    "where the device stands: 'in' (entrance), 'out' (exit), 'both' (a reader on each side, a"
    " canteen counter, or not said). Each event still carries the reader that read the card."
)


class DeviceIn(Input):
    id: DeviceId
    school_id: SchoolId
    place: text(0, 200) = ""  # type: ignore[valid-type]
    mode: Mode
    reader: text(0, 50) = ""  # type: ignore[valid-type]
    direction: Direction = Field(default="both", description=DIRECTION_DOC)


class DevicePatch(Input):
    place: text(0, 200) | None = None  # type: ignore[valid-type]
    mode: Mode | None = None
    reader: text(0, 50) | None = None  # type: ignore[valid-type]
    direction: Direction | None = Field(default=None, description=DIRECTION_DOC)


class DeviceOut(BaseModel):
    id: str
    school_id: str
    place: str
    mode: Mode
    reader: str
    direction: Direction
    created_at: datetime


def broker_or_503(settings: Settings) -> BrokerAccounts:
    try:
        return broker_accounts(settings)
    except BrokerError as e:
        raise HTTPException(status_code=503, detail=f"broker accounts unavailable: {e}") from e


def broker_failure(e: BrokerError, what: str) -> HTTPException:
    """A client that is not a board's: 409 (someone must look at the broker); a broker that is
    down or refused: 503 (try again). Either way the request's transaction is rolled back."""
    status = 409 if isinstance(e, NotABoardAccount) else 503
    return HTTPException(status_code=status, detail=f"{what}: {e}")


def _visible(conn: ConnDep, p: Principal, device_id: str) -> dict[str, object]:
    return registration.visible(conn, p, device_id)


@router.get("/devices", response_model=Page[DeviceOut])
def list_devices(
    conn: ConnDep,
    p: DeviceReader,
    pg: PageDep,
    school: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    mode: Mode | None = None,
    direction: Direction | None = None,
) -> Page[DeviceOut]:
    where = [
        ("t.school_id = ANY(%s)", scope.school_ids(conn, p)),
        ("t.school_id = %s", school),
        ("t.mode = %s", mode),
        ("t.direction = %s", direction),
    ]
    total, rows = store.page(conn, "devices", where, limit=pg.limit, offset=pg.offset)
    return page_of(DeviceOut, total, pg.limit, pg.offset, rows)


@router.post("/devices", response_model=DeviceOut, status_code=201)
def create_device(conn: ConnDep, p: DeviceWriter, body: DeviceIn) -> DeviceOut:
    """Register a reader (D4: events of unregistered devices are quarantined). The id of a
    device another school deleted is refused (409): ids are not reused across schools."""
    return DeviceOut.model_validate(registration.register(conn, p, body.model_dump()))


@router.get("/devices/{device_id}", response_model=DeviceOut)
def get_device(conn: ConnDep, p: DeviceReader, device_id: DevicePath) -> DeviceOut:
    return DeviceOut.model_validate(_visible(conn, p, device_id))


@router.patch("/devices/{device_id}", response_model=DeviceOut)
def update_device(
    conn: ConnDep, p: DeviceWriter, device_id: DevicePath, body: DevicePatch
) -> DeviceOut:
    _visible(conn, p, device_id)
    values = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    return DeviceOut.model_validate(store.update(conn, p, "devices", device_id, values))


@router.delete("/devices/{device_id}", status_code=204)
def delete_device(conn: ConnDep, p: DeviceWriter, s: SettingsDep, device_id: DevicePath) -> None:
    """Only a device that never sent an event can be deleted (events keep their device). A
    provisioned board's broker account is disabled in the same request (503 and nothing deleted
    when the broker refuses); the id stays reserved for this school (docs/provisioning.md)."""
    try:
        registration.delete(conn, p, device_id, lambda: broker_or_503(s))
    except BrokerError as e:
        raise broker_failure(e, "the board's broker account could not be disabled") from e
