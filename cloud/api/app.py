"""The HTTP API and console: ``create_app(settings)``."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse

from cloud.api.deps import SettingsDep
from cloud.api.events import router as events_router
from cloud.db.conn import connect
from cloud.settings import Settings, get_settings

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
log = logging.getLogger("qadam.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="qadam", version="0.1.0")
    app.state.settings = settings if settings is not None else get_settings()
    app.include_router(events_router)

    @app.get("/healthz", tags=["ops"])
    def healthz(s: SettingsDep) -> JSONResponse:
        try:
            with connect(s.database_url, autocommit=True, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as e:
            log.warning("healthz database check failed error=%s", type(e).__name__)
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/", include_in_schema=False)
    @app.get("/live", include_in_schema=False)
    def live() -> FileResponse:
        return FileResponse(CONSOLE_DIR / "live.html", media_type="text/html")

    return app
