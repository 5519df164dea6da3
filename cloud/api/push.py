"""``/api/v1/push`` and ``/api/v1/me/push-subscriptions``: Web Push subscriptions of the caller.

A parent's browser or app subscribes at its push service with our VAPID public key and posts
the resulting PushSubscription here; notifications then reach it encrypted (docs/push.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, PrincipalDep, PushSubscriber, SettingsDep
from cloud.api.models import IdPath, Input
from cloud.domain.errors import NotFound
from cloud.push import subscriptions
from cloud.push.subscriptions import EndpointPolicy

router = APIRouter(prefix="/api/v1", tags=["push"])


class VapidKeyOut(BaseModel):
    application_server_key: str = Field(
        description="base64url P-256 public key: PushManager.subscribe({applicationServerKey})"
    )


class KeysIn(Input):
    p256dh: str = Field(min_length=1, max_length=200)
    auth: str = Field(min_length=1, max_length=100)


class SubscriptionIn(Input):
    """A browser's PushSubscription.toJSON(), plus the language for the texts."""

    endpoint: str = Field(min_length=8, max_length=2048)
    expirationTime: int | None = Field(default=None, ge=0)  # noqa: N815 (the W3C field name)
    keys: KeysIn
    lang: Literal["kk", "ru", "en"] = "ru"


class SubscriptionOut(BaseModel):
    id: int
    endpoint: str
    lang: str
    created_at: datetime
    last_ok_at: datetime | None


@router.get("/push/key", response_model=VapidKeyOut)
def vapid_key(settings: SettingsDep, _: PrincipalDep) -> VapidKeyOut:
    if not settings.push_vapid_key_file:
        raise HTTPException(status_code=404, detail="web push is not configured on this server")
    from pathlib import Path

    from cloud.push.webpush import VapidKey

    pem = Path(settings.push_vapid_key_file).read_bytes()
    key = VapidKey(pem, settings.push_vapid_subject or "")
    return VapidKeyOut(application_server_key=key.application_server_key)


@router.get("/me/push-subscriptions", response_model=list[SubscriptionOut])
def list_subscriptions(conn: ConnDep, p: PushSubscriber) -> list[SubscriptionOut]:
    assert p.user_id is not None
    return [SubscriptionOut(**r) for r in subscriptions.list_for_user(conn, p.user_id)]


@router.post("/me/push-subscriptions", response_model=SubscriptionOut, status_code=201)
def subscribe(
    conn: ConnDep, settings: SettingsDep, p: PushSubscriber, body: SubscriptionIn
) -> SubscriptionOut:
    assert p.user_id is not None
    policy = EndpointPolicy(settings.push_endpoint_hosts, settings.push_allow_http_loopback)
    endpoint = subscriptions.check_endpoint(body.endpoint, policy)
    point, secret = subscriptions.decode_keys(body.keys.p256dh, body.keys.auth)
    row = subscriptions.upsert(conn, p, endpoint, point, secret, body.lang)
    return SubscriptionOut(**row)


@router.delete("/me/push-subscriptions/{sub_id}", status_code=204)
def unsubscribe(conn: ConnDep, p: PushSubscriber, sub_id: IdPath) -> Response:
    if not subscriptions.delete_own(conn, p, sub_id):
        raise NotFound(f"push subscription {sub_id} not found")
    return Response(status_code=204)
