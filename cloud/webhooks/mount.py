"""Mounting the integrations into the API app: the webhooks' API routes and console page, the
platforms' read API (D29-I)."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    from cloud.api import platform
    from cloud.api import webhooks as api
    from cloud.console import platform_clients_page, webhooks_page

    app.include_router(api.router)
    app.include_router(platform.router)  # the read API for platforms (D29-I)
    app.include_router(webhooks_page.router)
    app.include_router(platform_clients_page.router)  # machine clients of the read API
