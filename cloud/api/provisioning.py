"""Device provisioning: claim tokens (technicians), the board's credential exchange, revocation
(docs/provisioning.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, StringConstraints

from cloud.api.deps import ConnDep, DeviceWriter, SettingsDep
from cloud.api.devices import DeviceId, DevicePath
from cloud.api.models import Input
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import NotFound
from cloud.provisioning import service
from cloud.provisioning.dynsec import BrokerAccounts, BrokerError, broker_accounts
from cloud.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["provisioning"])

ClaimToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,128}$")]


class ClaimOut(BaseModel):
    device: str
    token: str
    expires_at: datetime


class ProvisionIn(Input):
    device: DeviceId
    token: ClaimToken


class MqttOut(BaseModel):
    host: str
    port: int
    prefix: str
    user: str
    password: str
    acl: bool  # False: the broker is open (mqtt_dynsec off), the credentials are not enforced


class ProvisionOut(BaseModel):
    device: str
    school: str
    site_key: str  # hex; device.json "site_key" (protocol.md "Card key")
    mqtt: MqttOut


class RevokeOut(BaseModel):
    device: str
    credentials_revoked: bool
    tokens_revoked: int


def _device_school(conn: ConnDep, p: Principal, device_id: str) -> str:
    row = store.get(conn, "devices", device_id)
    ids = scope.school_ids(conn, p)
    if ids is not None and row["school_id"] not in ids:
        raise NotFound(f"device {device_id} not found")
    return str(row["school_id"])


def _broker(settings: Settings) -> BrokerAccounts:
    try:
        return broker_accounts(settings)
    except BrokerError as e:
        raise HTTPException(status_code=503, detail=f"broker accounts unavailable: {e}") from e


@router.post("/devices/{device_id}/claim-token", response_model=ClaimOut, status_code=201)
def create_claim_token(
    conn: ConnDep, p: DeviceWriter, s: SettingsDep, device_id: DevicePath
) -> ClaimOut:
    """A one-time token the board trades for its MQTT credentials at POST /api/v1/provision.
    Shown once; valid for ``claim_token_ttl_s`` (default 24 h)."""
    school = _device_school(conn, p, device_id)
    token, expires = service.create_claim_token(conn, p, device_id, school, s.claim_token_ttl_s)
    return ClaimOut(device=device_id, token=token, expires_at=expires)


@router.post("/provision", response_model=ProvisionOut)
def provision(conn: ConnDep, s: SettingsDep, body: ProvisionIn) -> ProvisionOut:
    """Called by the board, without a bearer token: the claim token is the authentication and
    works once. Returns the board's broker account (user = device id, a new random password)."""
    broker = _broker(s)
    try:
        c = service.provision(conn, s, broker, body.device, body.token)
    except service.BadClaim as e:
        raise HTTPException(status_code=403, detail=str(e)) from e
    except BrokerError as e:
        raise HTTPException(status_code=503, detail=f"broker refused the account: {e}") from e
    mqtt = MqttOut(
        host=c.host, port=c.port, prefix=c.prefix, user=c.username, password=c.password,
        acl=c.broker_acl,
    )  # fmt: skip
    return ProvisionOut(device=c.device, school=c.school, site_key=c.site_key.hex(), mqtt=mqtt)


@router.post("/devices/{device_id}/revoke", response_model=RevokeOut)
def revoke_device(
    conn: ConnDep, p: DeviceWriter, s: SettingsDep, device_id: DevicePath
) -> RevokeOut:
    """Disable the board's broker account (it can no longer connect) and void unused claim
    tokens. 409 when there is nothing to revoke. A new claim token re-provisions the device."""
    school = _device_school(conn, p, device_id)
    broker = _broker(s)
    try:
        out = service.revoke(conn, p, broker, device_id, school)
    except BrokerError as e:
        raise HTTPException(status_code=503, detail=f"broker refused: {e}") from e
    return RevokeOut.model_validate(out)
