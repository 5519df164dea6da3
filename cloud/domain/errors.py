"""Errors the domain raises; the API maps them to HTTP statuses (cloud/api/app.py)."""

from __future__ import annotations


class DomainError(Exception):
    """Base class. ``str(err)`` is a message safe to show to the caller."""


class NotFound(DomainError):  # 404: missing, or outside the caller's scope
    pass


class Forbidden(DomainError):  # 403: the caller's role may not do this
    pass


class Conflict(DomainError):  # 409: clashes with the current state (duplicate, already revoked)
    pass


class Invalid(DomainError):  # 422: a value is wrong in a way the request models cannot see
    def __init__(self, field: str, msg: str) -> None:
        super().__init__(msg)
        self.field = field
        self.msg = msg
