"""The provider's tests: the API tests' populated world (tests/cloud/api_world.py) with Alice
in class 5A, two registered platforms, an in-process client that speaks like a browser and a
live server for Chromium and the independent relying party."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import uvicorn
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cloud"))

from api_world import World, build  # noqa: E402
from oidc_helpers import Platform, register  # noqa: E402

from cloud.api.app import create_app  # noqa: E402
from cloud.settings import Settings  # noqa: E402


@pytest.fixture
def world(database_url: str) -> World:
    w = build(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE people SET class_id = %s WHERE id = %s", (w.ids["class_id"], w.ids["alice"])
        )
    return w


@pytest.fixture
def platform(database_url: str, world: World) -> Platform:
    """An e-textbook platform allowed every claim, with a sign-out return address."""
    return register(database_url, "Oqulyq", ["https://books.example/callback"],
                    ["openid", "role", "school", "class", "locale", "offline_access"],
                    ["https://books.example/signed-out"])  # fmt: skip


@pytest.fixture
def client(database_url: str, world: World) -> Iterator[TestClient]:
    settings = Settings(database_url=database_url, auth_required=True)
    headers = {"Accept-Language": "en", "Sec-Fetch-Site": "same-origin"}
    with TestClient(create_app(settings), base_url="https://testserver", headers=headers,
                    follow_redirects=False) as c:  # fmt: skip
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(database_url: str, world: World) -> Iterator[str]:
    """The app on a loopback port: its base URL (the issuer)."""
    port = _free_port()
    settings = Settings(database_url=database_url, auth_required=True, http_port=port)
    srv = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline, "web server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
