"""``/api/v1/auth``: log in (OAuth2 password form -> opaque bearer token), log out, who am I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from cloud.api.deps import ConnDep, PrincipalDep, SettingsDep, TokenDep
from cloud.auth import sessions
from cloud.auth.principal import Principal, Role
from cloud.domain.store import audit

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


@router.post("/token", response_model=TokenOut)
def login(
    conn: ConnDep, settings: SettingsDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> TokenOut:
    """OAuth2 password grant: ``username`` is the e-mail. 401 for unknown user or bad password
    (the same answer for both)."""
    if len(form.username) > 254 or len(form.password) > 1024 or "\x00" in form.username:
        raise HTTPException(status_code=401, detail="wrong e-mail or password")
    got = sessions.login(conn, form.username, form.password, settings.session_ttl_s)
    if got is None:
        raise HTTPException(
            status_code=401,
            detail="wrong e-mail or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token, user_id = got
    actor = Principal(user_id=user_id, email=form.username.strip().lower(), role="guardian")
    audit(conn, actor, "login", "users", user_id, None, None)
    return TokenOut(access_token=token, expires_in=settings.session_ttl_s)


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
