"""Who is calling: the user behind a bearer token, with role and scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal[
    "platform_admin",
    "district_authority",
    "school_admin",
    "canteen_operator",
    "technician",
    "guardian",
    "student",  # a pupil's own account, scoped to themself (D28-O)
]
ROLES: tuple[Role, ...] = (
    "platform_admin",
    "district_authority",
    "school_admin",
    "canteen_operator",
    "technician",
    "guardian",
    "student",
)


@dataclass(frozen=True)
class Principal:
    user_id: int | None  # None: the anonymous reader of GET /api/v1/events (auth_required=False)
    email: str
    role: Role
    district_id: int | None = None
    school_id: str | None = None

    @property
    def label(self) -> str:
        return self.email


# Used only for GET /api/v1/events when settings.auth_required is False (D8).
ANONYMOUS_READER = Principal(user_id=None, email="anonymous", role="platform_admin")
