"""``POST /api/v1/guardians/{id}/invitations``: a one-time sign-in link for a guardian (D27-F).

The answer holds the link once (only its hash is stored); making a new one revokes the older.
The console's guardians page makes the same invitation and prints it as a letter with a QR
code (cloud/console/invitations.py)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from cloud.api.deps import ConnDep, SchoolAdmin
from cloud.api.models import IdPath
from cloud.auth import invitations

router = APIRouter(prefix="/api/v1", tags=["guardians"])


class InvitationOut(BaseModel):
    id: int
    guardian_id: int
    url: str  # the one-time link: shown once, give it to the guardian
    expires_at: datetime


def link(request: Request, token: str) -> str:
    return str(request.base_url).rstrip("/") + invitations.PATH + token


@router.post("/guardians/{guardian_id}/invitations", response_model=InvitationOut,
             status_code=201)  # fmt: skip
def invite_guardian(
    request: Request, conn: ConnDep, p: SchoolAdmin, guardian_id: IdPath
) -> InvitationOut:
    """A school admin invites a guardian of their school (created by it or linked to one of
    its pupils); a platform admin, any guardian. Others' guardians are 404."""
    inv = invitations.create(conn, p, guardian_id)
    return InvitationOut(id=inv.id, guardian_id=inv.guardian_id, url=link(request, inv.token),
                         expires_at=inv.expires_at)  # fmt: skip
