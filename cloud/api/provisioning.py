"""Device provisioning: claim tokens (technicians), the board's credential exchange, revocation
(docs/provisioning.md)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from cloud.api.deps import ConnDep, DeviceWriter, SettingsDep
from cloud.api.devices import DeviceId, DevicePath, broker_failure, broker_or_503
from cloud.api.models import ClaimToken, Input  # one rule: cloud/domain/formats.py
from cloud.provisioning import registration, service
from cloud.provisioning.dynsec import BrokerError

router = APIRouter(prefix="/api/v1", tags=["provisioning"])


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
    tls: bool  # True: connect with TLS, verifying the broker with ca_pem (D25-K, D27-C)
    ca_pem: str | None  # the CA certificate(s) the board trusts, PEM; device file "ca.pem"
    server_hostname: str | None  # the name the broker's certificate must be for


class ProvisionOut(BaseModel):
    device: str
    school: str
    site_key: str  # hex; device.json "site_key" (protocol.md "Card key")
    mqtt: MqttOut
    ack_key: str  # hex; device.json "ack_key": the cloud's acks carry its mac (protocol.md "Ack")
    boot_floor: int  # device.json "boot_floor": newest boot the cloud holds (protocol.md)
    ntp: list[str]  # device.json "ntp" servers, asked in order (HOST or HOST:PORT)
    timezone: str  # the school's IANA time zone
    tz_offset_min: int  # its offset from UTC now, in minutes: device.json "tz_offset_min"
    mode: str  # the device's mode (door, turnstile, canteen): device.json "mode"
    # device.json "ota_pub": the release key's public half (hex) the board checks OTA images
    # with (docs/ota.md); None: the cloud has none, the board takes no updates
    ota_pub: str | None = None


class RevokeOut(BaseModel):
    device: str
    credentials_revoked: bool
    tokens_revoked: int
    retired: bool  # the device was deleted; its broker account is disabled (again)


@router.post("/devices/{device_id}/claim-token", response_model=ClaimOut, status_code=201)
def create_claim_token(
    conn: ConnDep, p: DeviceWriter, s: SettingsDep, device_id: DevicePath
) -> ClaimOut:
    """A one-time token the board trades for its MQTT credentials at POST /api/v1/provision.
    Shown once; valid for ``claim_token_ttl_s`` (default 24 h)."""
    token, expires = registration.claim_token(conn, p, device_id, s.claim_token_ttl_s)
    return ClaimOut(device=device_id, token=token, expires_at=expires)


@router.post("/provision", response_model=ProvisionOut)
def provision(conn: ConnDep, s: SettingsDep, body: ProvisionIn) -> ProvisionOut:
    """Called by the board, without a bearer token: the claim token is the authentication and
    works once. Returns the board's broker account (user ``board.{device}``, a new random
    password; the client id stays the device id)."""
    broker = broker_or_503(s)
    try:
        c = service.provision(conn, s, broker, body.device, body.token)
    except service.BadClaim as e:
        raise HTTPException(status_code=403, detail=str(e)) from e
    except BrokerError as e:
        raise broker_failure(e, "broker refused the account") from e
    mqtt = MqttOut(
        host=c.host, port=c.port, prefix=c.prefix, user=c.username, password=c.password,
        acl=c.broker_acl, tls=c.tls, ca_pem=c.ca_pem, server_hostname=c.server_hostname,
    )  # fmt: skip
    return ProvisionOut(
        device=c.device, school=c.school, site_key=c.site_key.hex(), mqtt=mqtt,
        ack_key=c.ack_key.hex(), boot_floor=c.boot_floor, ntp=list(c.ntp), timezone=c.timezone,
        tz_offset_min=c.tz_offset_min, mode=c.mode, ota_pub=s.ota_public_key,
    )  # fmt: skip


@router.post("/devices/{device_id}/revoke", response_model=RevokeOut)
def revoke_device(
    conn: ConnDep, p: DeviceWriter, s: SettingsDep, device_id: DevicePath
) -> RevokeOut:
    """Disable the board's broker account (it can no longer connect) and void unused claim
    tokens. 409 when there is nothing to revoke. A new claim token re-provisions the device.
    On a deleted device of the caller's schools: disables its broker account again
    (``retired: true``)."""
    try:
        out = registration.revoke(conn, p, device_id, lambda: broker_or_503(s))
    except BrokerError as e:
        raise broker_failure(e, "broker refused") from e
    return RevokeOut.model_validate(out)
