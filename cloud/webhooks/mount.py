"""Mounting the webhooks into the API app: the API routes and the console's page (D29-I)."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    from cloud.api import webhooks as api
    from cloud.console import webhooks_page

    app.include_router(api.router)
    app.include_router(webhooks_page.router)
