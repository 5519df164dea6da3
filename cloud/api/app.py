"""The HTTP API and console: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from cloud.api import (
    audit,
    auth,
    canteen,
    consents,
    dberrors,
    devices,
    dish_photos,
    metrics,
    org,
    overload,
    people,
    subject_data,
    users,
)
from cloud.api import imports as imports_api
from cloud.api import learning as learning_api
from cloud.api import provisioning as provisioning_api
from cloud.api import push as push_api
from cloud.api import whitelists as whitelists_api
from cloud.api.commands import router as commands_router
from cloud.api.deps import API_SESSION_OPTIONS, SettingsDep
from cloud.api.events import router as events_router
from cloud.api.ledger import router as ledger_router
from cloud.api.menus import router as menus_router
from cloud.api.ota import router as ota_router
from cloud.api.overload import Admission
from cloud.api.ratelimit import ClientRateLimit, RateLimits
from cloud.api.reports import router as reports_router
from cloud.api.socialwallet import router as socialwallet_router
from cloud.auth.token_cache import Invalidator, TokenCache
from cloud.console import web as console
from cloud.db.conn import connect
from cloud.db.pool import Connections
from cloud.domain.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from cloud.oidc import mount as oidc
from cloud.settings import Settings, get_settings
from cloud.webhooks import mount as webhooks

log = logging.getLogger("qadam.api")

ROUTERS = (
    auth.router,
    users.router,
    org.router,
    people.router,
    subject_data.router,  # a person's export and erasure (D28-K)
    whitelists_api.router,  # before devices: /devices/drift must not match /devices/{id}
    devices.router,
    commands_router,
    provisioning_api.router,
    canteen.router,
    dish_photos.router,  # dish photo uploads and /media/dishes/ (D28-D)
    dish_photos.media,
    menus_router,
    consents.router,
    push_api.router,
    audit.router,
    imports_api.router,
    events_router,
    socialwallet_router,
    reports_router,
    ledger_router,
    ota_router,
    learning_api.router,  # a school's learning resources (D28-O)
)


def _domain_error(_req: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, Invalid):
        detail = [{"type": "value_error", "loc": ["body", exc.field], "msg": exc.msg}]
        return JSONResponse({"detail": detail}, status_code=422)
    statuses: dict[type[Exception], int] = {NotFound: 404, Forbidden: 403, Conflict: 409}
    status = statuses.get(type(exc), 400)
    return JSONResponse({"detail": str(exc)}, status_code=status)


def _db_error(req: Request, exc: Exception) -> JSONResponse:
    """Constraint and data errors the request models could not see: the transaction was rolled
    back, so nothing changed. Reported by field, without constraint names or SQL details. A lost
    or refused connection (OperationalError) is answered as a busy service: 503 + Retry-After."""
    assert isinstance(exc, psycopg.Error)
    if isinstance(exc, psycopg.OperationalError):
        log.warning("database unavailable error=%s", type(exc).__name__)
        return overload.busy_response(req.app.state.settings.api_retry_after_s)
    return dberrors.response_for(exc)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the pool and the token cache's listener; keep the pool's gauges current."""
    s: Settings = app.state.settings
    if app.state.connections.settings is not s:  # pointed at other settings since create_app
        app.state.connections.close()
        app.state.connections = Connections(s, "qadam-api", API_SESSION_OPTIONS)
        app.state.read_connections = _read_connections(s, app.state.connections)
        app.state.token_cache = TokenCache(s.auth_cache_ttl_s)
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = max(limiter.total_tokens, s.api_max_inflight + 8)
    if app.state.connections.pooled:
        app.state.connections.pool()
    invalidator = None
    if s.auth_cache_ttl_s > 0:
        invalidator = Invalidator(app.state.token_cache, s.database_url)
        invalidator.start()

    async def observe() -> None:
        while True:
            metrics.observe_pool(app.state.connections.stats())
            await asyncio.sleep(1.0)

    observer = asyncio.create_task(observe())
    try:
        yield
    finally:
        observer.cancel()
        if invalidator is not None:
            await anyio.to_thread.run_sync(invalidator.stop)
        await anyio.to_thread.run_sync(app.state.connections.close)
        if app.state.read_connections is not app.state.connections:
            await anyio.to_thread.run_sync(app.state.read_connections.close)


def _read_connections(s: Settings, connections: Connections) -> Connections:
    """Where reads that may lag a little go (D29-D): their own pool on database_read_url (a
    standby preferred), or, without one, the same pool as everything else."""
    if not s.database_read_url:
        return connections
    return Connections(s, "qadam-api-read", API_SESSION_OPTIONS, read=True)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="qadam",
        version="0.1.0",
        description="School attendance, canteen and parent information (see docs/api.md).",
        lifespan=_lifespan,
        docs_url=None,  # served by the console from npm's swagger-ui-dist and redoc: no CDN
        redoc_url=None,
    )
    s = app.state.settings = settings if settings is not None else get_settings()
    # issue #19 (D27-D): pooled connections, cached token lookups, rate limits, admission queue
    app.state.connections = Connections(s, "qadam-api", API_SESSION_OPTIONS)
    app.state.read_connections = _read_connections(s, app.state.connections)
    app.state.token_cache = TokenCache(s.auth_cache_ttl_s)
    app.state.rate_limits = RateLimits(s.api_rate_client, s.api_rate_account)
    app.add_middleware(
        Admission, limit=s.api_max_inflight, queue_max=s.api_queue_max,
        wait_s=s.api_queue_wait_s, retry_after_s=s.api_retry_after_s,
    )  # fmt: skip
    app.add_middleware(ClientRateLimit, limits=app.state.rate_limits)  # outermost: no work yet
    if not app.state.settings.auth_required:
        log.warning(
            "AUTH NOT REQUIRED for GET /api/v1/events: anyone who reaches this port reads every "
            "event. Demo/dev only (QADAM_AUTH_REQUIRED=0); `qadam serve` refuses this without "
            "--insecure-dev."
        )
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(psycopg.Error, _db_error)
    app.add_exception_handler(PoolTimeout, overload.pool_timeout_handler)

    @app.get("/healthz", tags=["ops"])
    def healthz(s: SettingsDep) -> JSONResponse:
        try:
            with connect(s.database_url, autocommit=True, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as e:
            log.warning("healthz database check failed error=%s", type(e).__name__)
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    console.install(app)  # the web console, /docs and /redoc from our own files (D27-E)
    oidc.install(app)  # we are an OpenID Connect provider (D29-F, docs/sso.md)
    webhooks.install(app)  # signed webhooks: API and console page (D29-I)
    return app
