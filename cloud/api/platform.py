"""``/api/v1/platform/...``: the read API for platforms (D29-I, docs/integrations.md).

A platform's machine client gets a bearer token by the OAuth2 client credentials grant (RFC
6749 §4.4; client_secret_basic or the client's id and secret in the form) and reads, with it,
the attendance and meals of a day of the schools its registration names, as far as the token's
scopes allow. Errors as RFC 6749 §5.2 and RFC 6750 §3.1 say. Every token and every read is in
the audit log under the platform's name. These routes take no user sessions."""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Form, Header, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from cloud.api.deps import ConnDep, SettingsDep
from cloud.domain.errors import Invalid
from cloud.integrations.platform import clients, reads
from cloud.integrations.platform.clients import PlatformClient

router = APIRouter(prefix="/api/v1/platform", tags=["platform read API"])
SchoolPath = Annotated[str, Path(min_length=1, max_length=64)]
DayQuery = Annotated[date, Query(description="the school's local day, YYYY-MM-DD")]


class PlatformError(Exception):
    def __init__(self, status: int, error: str, description: str, scheme: str = "Bearer"):
        super().__init__(description)
        self.status, self.error, self.description, self.scheme = status, error, description, scheme

    def response(self) -> JSONResponse:
        headers = {"Cache-Control": "no-store"}
        if self.status in (401, 403):
            headers["WWW-Authenticate"] = f'{self.scheme} error="{self.error}"'
        return JSONResponse({"error": self.error, "error_description": self.description},
                            status_code=self.status, headers=headers)  # fmt: skip


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str


def _basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        raw = base64.b64decode(authorization[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    cid, sep, secret = raw.partition(":")
    return (unquote(cid), unquote(secret)) if sep else None


@router.post("/token", response_model=TokenOut)
def token(
    conn: ConnDep,
    settings: SettingsDep,
    grant_type: Annotated[str, Form(max_length=50)] = "",
    scope: Annotated[str | None, Form(max_length=200)] = None,
    client_id: Annotated[str | None, Form(max_length=100)] = None,
    client_secret: Annotated[str | None, Form(max_length=200)] = None,
    # not in the OpenAPI document: the client's credentials (RFC 6749 2.3.1: HTTP Basic, or the
    # form's client_id/client_secret), parsed here so a malformed one is an OAuth2 error
    authorization: Annotated[str | None, Header(max_length=500, include_in_schema=False)] = None,
) -> Any:
    """The client credentials grant: a bearer token for the client's scopes (or those asked)."""
    creds = _basic(authorization) or (
        (client_id, client_secret) if client_id and client_secret else None
    )
    try:
        if creds is None:
            raise PlatformError(401, "invalid_client", "client authentication failed", "Basic")
        client = clients.authenticate(conn, *creds)
        if client is None:
            raise PlatformError(401, "invalid_client", "client authentication failed", "Basic")
        if grant_type != "client_credentials":
            raise PlatformError(400, "unsupported_grant_type", "only client_credentials")
        try:
            issued, scopes = clients.issue_token(conn, client, scope.split() if scope else None,
                                                 settings.platform_token_ttl_s)  # fmt: skip
        except Invalid as e:
            raise PlatformError(400, "invalid_scope", e.msg) from e
    except PlatformError as e:
        return e.response()
    out = TokenOut(access_token=issued, expires_in=settings.platform_token_ttl_s,
                   scope=" ".join(scopes))  # fmt: skip
    return JSONResponse(out.model_dump(), headers={"Cache-Control": "no-store"})


def _client(
    conn: ConnDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,  # the bearer
) -> Any:
    if not authorization or not authorization.startswith("Bearer "):
        return PlatformError(401, "invalid_request", "a bearer token is required")
    found = clients.for_token(conn, authorization[7:].strip())
    return found or PlatformError(401, "invalid_token", "the token is unknown or expired")


ClientDep = Annotated[PlatformClient | PlatformError, Depends(_client)]


def _allowed(client: PlatformClient | PlatformError, scope: str, school_id: str) -> None:
    if isinstance(client, PlatformError):
        raise client
    if scope not in client.scopes:
        raise PlatformError(403, "insufficient_scope", f"this token lacks {scope}")
    if school_id not in client.schools:  # as for a school that does not exist
        raise PlatformError(404, "not_found", f"school {school_id!r} not found")


def _iso(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()}
            for r in rows]  # fmt: skip


def _read(conn: ConnDep, client: PlatformClient | PlatformError, scope: str, school_id: str,
          day: date, what: str) -> JSONResponse:  # fmt: skip
    try:
        _allowed(client, scope, school_id)
    except PlatformError as e:
        return e.response()
    assert isinstance(client, PlatformClient)
    rows = (reads.attendance if what == "attendance" else reads.meals)(conn, school_id, day)
    clients.audit(conn, client, "export", f"platform_{what}", f"{school_id}:{day}", school_id,
                  {"rows": len(rows)})  # fmt: skip
    return JSONResponse({"school_id": school_id, "day": day.isoformat(), "items": _iso(rows)})


@router.get("/schools/{school_id}/attendance")
def attendance(conn: ConnDep, client: ClientDep, school_id: SchoolPath, day: DayQuery) -> Any:
    """Who entered and left that day (scope attendance.read). Audited."""
    return _read(conn, client, "attendance.read", school_id, day, "attendance")


@router.get("/schools/{school_id}/meals")
def meals(conn: ConnDep, client: ClientDep, school_id: SchoolPath, day: DayQuery) -> Any:
    """Meals received that day (scope meals.read). Audited."""
    return _read(conn, client, "meals.read", school_id, day, "meals")
