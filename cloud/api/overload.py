"""Overload behaviour of the API (issue #19, D27-D): a process works on at most
``api_max_inflight`` requests at once; the next ones wait in a bounded queue (at most
``api_queue_max``, each at most ``api_queue_wait_s``), then get 503 with Retry-After, as does a
request that waited ``db_pool_timeout_s`` for a pooled connection. Nothing else is queued, so
memory stays bounded and the CPU goes to the requests already admitted (and the ingest's taps on
the same machine), instead of to thousands of half-served ones.

``Admission`` is plain ASGI (no per-request task or thread); the wait is one future per queued
request, handed its slot in arrival order.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud.api import metrics

# Not queued: a load balancer's health check must see the process alive while it is busy.
EXEMPT_PATHS = frozenset({"/healthz"})


def busy_response(retry_after_s: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"the service is busy: try again in {retry_after_s} s"},
        status_code=503,
        headers={"Retry-After": str(retry_after_s)},
    )


def pool_timeout_handler(request: Request, _exc: Exception) -> JSONResponse:
    """No pooled connection came within db_pool_timeout_s (the pool is exhausted, or the
    database is not answering): the request did nothing, the client may retry."""
    metrics.SHED.labels("pool_timeout").inc()
    return busy_response(request.app.state.settings.api_retry_after_s)


class Admission:
    """At most ``limit`` requests in the app; up to ``queue_max`` more wait up to ``wait_s``."""

    def __init__(self, app: ASGIApp, limit: int, queue_max: int, wait_s: float,
                 retry_after_s: int) -> None:  # fmt: skip
        self.app = app
        self.limit = limit
        self.queue_max = queue_max
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.inflight = 0
        self.queued = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.inflight < self.limit and not self.queued:
            self.inflight += 1
        elif not await self._wait():
            await busy_response(self.retry_after_s)(scope, receive, send)
            return
        metrics.INFLIGHT.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            metrics.INFLIGHT.dec()
            self._release()

    async def _wait(self) -> bool:
        """Queue for a slot; True once one was handed over, False if refused."""
        if self.queued >= self.queue_max or self.wait_s <= 0:
            metrics.SHED.labels("queue_full").inc()
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self.queued += 1
        metrics.QUEUED.inc()
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.wait_s)
            return True
        except TimeoutError:
            if fut.done():  # handed a slot just as the wait ran out: take it
                return True
            fut.cancel()  # _release skips it
            metrics.SHED.labels("queue_timeout").inc()
            return False
        except asyncio.CancelledError:  # the client went away while queued
            if fut.done() and not fut.cancelled():
                self._release()  # the slot it was handed goes to the next one
            fut.cancel()
            raise
        finally:
            self.queued -= 1
            metrics.QUEUED.dec()

    def _release(self) -> None:
        """Hand the slot to the longest waiting request, or free it."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.inflight -= 1

    def state(self) -> dict[str, Any]:
        return {"inflight": self.inflight, "queued": self.queued}
