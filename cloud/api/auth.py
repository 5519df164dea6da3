"""``/api/v1/auth``: log in (OAuth2 password form -> opaque bearer token), log out, who am I."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from cloud.api.deps import ConnDep, LoginThrottleDep, PrincipalDep, SettingsDep, TokenDep
from cloud.auth import sessions
from cloud.auth.principal import Principal, Role
from cloud.auth.throttle import LoginThrottle, record_attempt
from cloud.domain.store import audit
from cloud.settings import Settings

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class MeOut(BaseModel):
    id: int | None
    email: str
    role: Role
    district_id: int | None
    school_id: str | None


class DetailOut(BaseModel):
    detail: str


WRONG = "wrong e-mail or password"
LOGIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": WRONG, "model": DetailOut},
    429: {
        "description": "too many failed logins for this account or from this address; the"
        " Retry-After header says how many seconds to wait (D24-D)",
        "model": DetailOut,
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


def client_address(request: Request) -> str:
    return (request.client.host if request.client else "") or "unknown"


@router.post("/token", response_model=TokenOut, responses=LOGIN_RESPONSES)
def login(
    conn: ConnDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> TokenOut | JSONResponse:
    """OAuth2 password grant: ``username`` is the e-mail. 401 for unknown user or bad password
    (the same answer for both). Failed logins are throttled per account and per client address
    (429 with Retry-After, the right password included, until the window ends; D24-D). Refusals
    are answered, not raised, so their counts and audit rows commit."""
    got = attempt(conn, settings, throttle, client_address(request), form.username, form.password)
    if got.retry_after:
        return JSONResponse(
            {"detail": f"too many failed logins: try again in {got.retry_after} s"},
            status_code=429,
            headers={"Retry-After": str(got.retry_after)},
        )
    if got.token is None:
        return _wrong()
    return TokenOut(access_token=got.token, expires_in=settings.session_ttl_s)


@dataclass(frozen=True)
class Attempt:
    token: str | None = None  # a new session's token: the password was right
    user_id: int | None = None
    retry_after: int = 0  # refused by the throttle: seconds to wait


def attempt(
    conn: psycopg.Connection[Any],
    settings: Settings,
    throttle: LoginThrottle,
    client: str,
    username: str,
    password: str,
) -> Attempt:
    """One login attempt, throttled and audited: the API's token login and the console's
    sign-in both go through here. The caller answers, not raises, so counts and audit rows
    commit."""
    email = username.strip().lower()
    bound = throttle.bind(conn)
    if len(email) > 254 or len(password) > 1024 or "\x00" in email:
        bound.failed(None, client)  # no account to count: the address is counted
        record_attempt(conn, email[:254].replace("\x00", ""), client, None, "failed")
        return Attempt()
    bound.lock_account(email)
    wait = bound.retry_after(email, client)
    if wait:
        bound.refused(client)
        record_attempt(conn, email, client, _user_id(conn, email), "refused", wait)
        return Attempt(retry_after=wait)
    got = sessions.login(conn, email, password, settings.session_ttl_s)
    if got is None:
        bound.failed(email, client)
        record_attempt(conn, email, client, _user_id(conn, email), "failed")
        return Attempt()
    bound.succeeded(email)
    token, user_id = got
    actor = Principal(user_id=user_id, email=email, role="guardian")
    audit(conn, actor, "login", "users", user_id, None, None)
    return Attempt(token=token, user_id=user_id)


def _wrong() -> JSONResponse:
    return JSONResponse({"detail": WRONG}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def _user_id(conn: ConnDep, email: str) -> int | None:
    """For the audit row only: the answer is the same whether the account exists or not."""
    row = conn.execute("SELECT id FROM users WHERE email = %s", (email,)).fetchone()
    return None if row is None else int(row[0])


@router.post("/logout", status_code=204)
def logout(conn: ConnDep, principal: PrincipalDep, token: TokenDep) -> None:
    """Revoke the token of this request."""
    assert token is not None  # PrincipalDep already required it
    sessions.logout(conn, token)
    audit(conn, principal, "logout", "users", principal.user_id, None, None)


@router.get("/me", response_model=MeOut)
def me(principal: PrincipalDep) -> MeOut:
    return MeOut(
        id=principal.user_id,
        email=principal.email,
        role=principal.role,
        district_id=principal.district_id,
        school_id=principal.school_id,
    )
