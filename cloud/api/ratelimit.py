"""Per-client and per-account rate limits of the API (issue #19, D27-D), with PyPI ``limits``
(fixed windows) counting in each process's memory.

Not in PostgreSQL as the login throttle is (cloud/auth/throttle.py): that is one write per
attempt, fine for logins and what a burst of reads must not pay. So each API process counts on
its own: with ``api_workers`` processes a client may get up to that many times the limit, which
still keeps one client from starving the rest (the aim), and a client never gets less than it.

- per client address (``api_rate_client``): checked before the request takes an admission slot
  or a connection, so a flood costs no database work;
- per account (``api_rate_account``): checked after the token lookup (cloud/api/deps.py).

A refused request gets 429 with Retry-After (seconds to the end of the window) and is counted
in ``qadam_api_rate_limited_total``.
"""

from __future__ import annotations

import math
import time

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud.api import metrics

EXEMPT_PATHS = frozenset({"/healthz"})


class RateLimits:
    def __init__(self, client_limits: str, account_limits: str) -> None:
        self.client_items: list[RateLimitItem] = _parse(client_limits)
        self.account_items: list[RateLimitItem] = _parse(account_limits)
        self.limiter = FixedWindowRateLimiter(MemoryStorage())

    def _refusal(self, items: list[RateLimitItem], *ids: str) -> int:
        """0 if a request of ``ids`` is let through (and counted), else the seconds to wait."""
        for item in items:
            if not self.limiter.hit(item, *ids):
                reset = self.limiter.get_window_stats(item, *ids).reset_time
                return max(1, math.ceil(reset - time.time()))
        return 0

    def client_wait(self, address: str) -> int:
        return self._refusal(self.client_items, "api-client", address) if self.client_items else 0

    def account_wait(self, user_id: int) -> int:
        if not self.account_items:
            return 0
        return self._refusal(self.account_items, "api-account", str(user_id))

    def check_account(self, user_id: int | None) -> None:
        """Raise 429 if the account is over its limit (the anonymous demo reader is not)."""
        if user_id is None:
            return
        wait = self.account_wait(user_id)
        if wait:
            metrics.RATE_LIMITED.labels("account").inc()
            raise HTTPException(
                status_code=429,
                detail=f"too many requests for this account: try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )


def _parse(text: str) -> list[RateLimitItem]:
    return parse_many(text) if text.strip() else []


class ClientRateLimit:
    """ASGI middleware: the per-address limit, before anything else runs."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in EXEMPT_PATHS:
            client = scope.get("client")
            wait = self.limits.client_wait(client[0] if client else "unknown")
            if wait:
                metrics.RATE_LIMITED.labels("client").inc()
                response = JSONResponse(
                    {"detail": f"too many requests from this address: try again in {wait} s"},
                    status_code=429,
                    headers={"Retry-After": str(wait)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
