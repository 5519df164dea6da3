"""Forgot password and invitations by e-mail (D28-B): being written."""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    return None
