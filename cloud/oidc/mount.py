"""Mounting the provider into the API app: its machine endpoints, its pages and the console's
registration page."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    from cloud.console import app_platforms, oidc_clients, oidc_pages
    from cloud.oidc import routes

    app.include_router(routes.router)
    app.include_router(oidc_pages.router)
    app.include_router(oidc_clients.router)
    app.include_router(app_platforms.router)  # guardians: the platforms their child used
