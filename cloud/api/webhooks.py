"""``/api/v1/schools/{id}/webhooks`` and ``/api/v1/webhooks/{id}``: signed webhooks of a school
(D29-I, docs/integrations.md). A school's administrators register subscribers; the district or
platform administrator keeps the hosts they may point at. A secret is in the answer that made
it and nowhere else."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, SettingsDep, allow
from cloud.api.models import IdPath, Input
from cloud.auth.principal import Principal
from cloud.auth.scope import require_school
from cloud.webhooks import subscribers

router = APIRouter(prefix="/api/v1", tags=["webhooks"])

SchoolPath = Annotated[str, Path(min_length=1, max_length=64)]
# a school's own integrations: its admins and those above it
WebhookKeeper = Annotated[
    Principal, Depends(allow("platform_admin", "district_authority", "school_admin"))
]
# where a school's webhooks may go: above the school
WebhookHostKeeper = Annotated[Principal, Depends(allow("platform_admin", "district_authority"))]
EventKind = Literal["passage", "meal", "device_offline", "report_approved"]


class HostsIn(Input):
    hosts: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        max_length=subscribers.MAX_HOSTS, examples=[["hooks.example.kz"]]
    )


class HostsOut(BaseModel):
    school_id: str
    hosts: list[str]


class WebhookIn(Input):
    url: str = Field(min_length=8, max_length=2048, examples=["https://hooks.example.kz/qadam"])
    events: list[EventKind] = Field(min_length=1, max_length=4)


class WebhookOut(BaseModel):
    id: int
    school_id: str
    url: str
    events: list[str]
    created_at: datetime
    rotated_at: datetime | None


class WebhookListed(WebhookOut):
    delivered: int = Field(description="deliveries the receiver answered with 2xx")
    waiting: int = Field(description="deliveries not sent yet, or being retried")
    failed: int = Field(description="dead letters: refused, or retried until the outbox gave up")
    last_error: str | None = Field(description="the newest dead letter's error")


class WebhookSecretOut(WebhookOut):
    secret: str = Field(description="the HMAC-SHA256 key; shown in this answer only")


@router.get("/schools/{school_id}/webhook-hosts", response_model=HostsOut)
def get_hosts(conn: ConnDep, p: WebhookKeeper, school_id: SchoolPath) -> HostsOut:
    require_school(conn, p, school_id)
    return HostsOut(school_id=school_id, hosts=subscribers.hosts(conn, school_id))


@router.put("/schools/{school_id}/webhook-hosts", response_model=HostsOut)
def put_hosts(
    conn: ConnDep, p: WebhookHostKeeper, school_id: SchoolPath, body: HostsIn
) -> HostsOut:
    """Replace the school's allowlist of webhook hosts (exact host names). Audited."""
    require_school(conn, p, school_id)
    return HostsOut(school_id=school_id, hosts=subscribers.set_hosts(conn, p, school_id,
                                                                     body.hosts))  # fmt: skip


@router.get("/schools/{school_id}/webhooks", response_model=list[WebhookListed])
def list_webhooks(conn: ConnDep, p: WebhookKeeper, school_id: SchoolPath) -> list[WebhookListed]:
    """The school's subscribers (never their secrets), with what became of their deliveries."""
    require_school(conn, p, school_id)
    return [WebhookListed(**r) for r in subscribers.listing(conn, school_id)]


@router.post("/schools/{school_id}/webhooks", response_model=WebhookSecretOut, status_code=201)
def register(
    conn: ConnDep, settings: SettingsDep, p: WebhookKeeper, school_id: SchoolPath,
    body: WebhookIn,
) -> WebhookSecretOut:  # fmt: skip
    """A new subscriber: an https URL on the school's allowlist and the event kinds it wants.
    The answer holds the signing secret, once. Audited."""
    require_school(conn, p, school_id)
    row = subscribers.register(conn, p, school_id, body.url, body.events,
                               settings.webhook_allow_http_loopback)  # fmt: skip
    return WebhookSecretOut(**row)


def _scoped(conn: ConnDep, p: Principal, webhook_id: int) -> None:
    require_school(conn, p, subscribers.school_of(conn, webhook_id))


@router.post("/webhooks/{webhook_id}/rotate-secret", response_model=WebhookSecretOut)
def rotate(conn: ConnDep, p: WebhookKeeper, webhook_id: IdPath) -> WebhookSecretOut:
    """A new secret, used from the next delivery on (shown once). Audited."""
    _scoped(conn, p, webhook_id)
    return WebhookSecretOut(**subscribers.rotate(conn, p, webhook_id))


@router.delete("/webhooks/{webhook_id}", status_code=204)
def delete(conn: ConnDep, p: WebhookKeeper, webhook_id: IdPath) -> Response:
    """Remove a subscriber; what it had not received yet becomes dead letters. Audited."""
    _scoped(conn, p, webhook_id)
    subscribers.delete(conn, p, webhook_id)
    return Response(status_code=204)
