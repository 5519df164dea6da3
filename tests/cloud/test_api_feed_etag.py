"""The hot reads of issue #19: the child's feed answers with an ETag and 304 when unchanged (a new
tap or a clock correction changes it), and the events count stops at COUNT_CAP on the hot
paths (``total_more``)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from api_world import CARD_ALICE, World, add_event, build, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.api.events import COUNT_CAP
from cloud.commands.menu import school_today
from cloud.settings import Settings


@pytest.fixture
def world(database_url: str) -> World:
    w = build(database_url)
    login_all(None, w, database_url)  # type: ignore[arg-type]  # sessions written directly
    return w


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url))) as c:
        yield c


def _feed(client: TestClient, w: World, **headers: str) -> tuple[int, dict[str, str], bytes]:
    alice = w.ids["alice"]
    r = client.get(f"/api/v1/events?person={alice}&limit=50",
                   headers={**w.auth("guardian"), **headers})  # fmt: skip
    return r.status_code, dict(r.headers), r.content


def test_the_feed_is_revalidated_with_its_etag(
    client: TestClient, world: World, database_url: str
) -> None:
    status, headers, body = _feed(client, world)
    assert status == 200
    tag = headers["etag"]
    assert tag.startswith('"') and "no-cache" in headers["cache-control"]
    assert "private" in headers["cache-control"]

    status, headers, body = _feed(client, world, **{"If-None-Match": tag})
    assert status == 304 and body == b"" and headers["etag"] == tag
    assert _feed(client, world, **{"If-None-Match": f'"other", W/{tag}'})[0] == 304
    assert _feed(client, world, **{"If-None-Match": '"other"'})[0] == 200

    with psycopg.connect(database_url) as conn:  # a new tap of the child
        add_event(conn, "gate-1", 901, "s1", world.ids["alice"], CARD_ALICE)
    status, headers, body = _feed(client, world, **{"If-None-Match": tag})
    assert status == 200 and headers["etag"] != tag
    tag = headers["etag"]

    with psycopg.connect(database_url) as conn:  # a clock correction of a stored tap
        conn.execute(
            "UPDATE events SET occurred_at_corrected = occurred_at - interval '1 hour'"
            " WHERE person_id = %s AND seq = 901",
            (world.ids["alice"],),
        )
    status, headers, _ = _feed(client, world, **{"If-None-Match": tag})
    assert status == 200 and headers["etag"] != tag


def test_counts_stop_at_the_cap_on_hot_paths(
    client: TestClient, world: World, database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        for seq in range(1000, 1000 + COUNT_CAP + 5):
            add_event(conn, "gate-1", seq, "s1", world.ids["alice"], CARD_ALICE)
    r = client.get("/api/v1/events?limit=50", headers=world.auth("school_admin"))
    page = r.json()
    assert r.status_code == 200
    assert page["total"] == COUNT_CAP and page["total_more"] is True
    assert len(page["items"]) == 50 and page["next_cursor"]
    r = client.get("/api/v1/events?limit=50&school=s2", headers=world.auth("platform_admin"))
    small = r.json()
    assert small["total_more"] is False and small["total"] == len(small["items"])


def test_the_menu_is_revalidated_with_its_etag(
    client: TestClient, world: World, database_url: str
) -> None:
    menu, guardian = "/api/v1/schools/s1/menu", world.auth("guardian")
    first = client.get(menu, headers=guardian)
    assert first.status_code == 200 and first.json() == []  # nothing planned yet
    tag = first.headers["etag"]
    again = client.get(menu, headers={**guardian, "If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    with psycopg.connect(database_url) as conn:
        today = school_today(conn, "s1")
    r = client.put(f"{menu}/{today.isoformat()}", headers=world.auth("school_admin"),
                   json={"periods": {"lunch": [world.ids["dish_id"]]}})  # fmt: skip
    assert r.status_code == 200, r.text
    changed = client.get(menu, headers={**guardian, "If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert len(changed.json()) == 1
