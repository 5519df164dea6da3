"""Which child an app page shows (``?child=``): the guardian's first child by default, any
other id "not found" as the API answers (cloud/auth/scope.py), for the money, statistics and
settings pages (D28-H)."""

from __future__ import annotations

from typing import Any

from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.console.app_pages import Child, children
from cloud.domain.errors import NotFound


def pick(conn: Any, user: Principal, child: int | None) -> tuple[list[Child], Child | None]:
    """(the guardian's children, the one shown or None when they have none). Raises NotFound
    for a child that is not theirs."""
    kids = children(conn, user)
    if child is None:
        return kids, kids[0] if kids else None
    scope.require_person(conn, user, child)  # the API's rule, and its "not found"
    shown = next((k for k in kids if k.id == child), None)
    if shown is None:
        raise NotFound(f"person {child} not found")
    return kids, shown
