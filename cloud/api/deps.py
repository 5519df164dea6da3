"""FastAPI dependencies, as ``Annotated`` aliases routes can use as parameter types."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request

from cloud.db.conn import connect
from cloud.settings import Settings


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_conn(settings: Annotated[Settings, Depends(get_app_settings)]) -> Iterator[Any]:
    """One read-only autocommit connection per request (no pool yet)."""
    with connect(settings.database_url, autocommit=True, application_name="qadam-api") as conn:
        yield conn


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ConnDep = Annotated[psycopg.Connection[Any], Depends(get_conn)]
