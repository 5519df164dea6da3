"""The read API for platforms (D29-I): a machine client gets a token by the OAuth2 client
credentials grant, fetched here by an independent client (requests-oauthlib) from the API on a
loopback port, and reads its school's attendance and meals; every token and read audited; the
negative cases refused as RFC 6749 and RFC 6750 say."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
import requests
import uvicorn
from api_world import CARD_ALICE, CARD_AMIR, PASSWORD, World
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session
from webhook_world import ingest

from cloud.api.app import create_app
from cloud.integrations.platform import clients
from cloud.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def site(database_url: str, world: World) -> Iterator[str]:
    settings = Settings(database_url=database_url, auth_required=True, http_port=_free_port())
    srv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                        port=settings.http_port, log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline, "web server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{settings.http_port}/api/v1/platform"
    srv.should_exit = True
    thread.join(10)


def _client(url: str, scopes: list[str], schools: tuple[str, ...] = ("s1",)) -> tuple[str, str]:
    with psycopg.connect(url) as conn:
        return clients.create(conn, "Regional platform", schools, scopes)


def _day(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT day FROM attendance WHERE school_id = 's1'").fetchone()
    assert row is not None
    return str(row[0])


def _audit(url: str, actor: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT action, entity, entity_id FROM audit_log WHERE actor = %s ORDER BY id",
            (actor,),
        ).fetchall()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_platform_reads_its_schools_attendance_and_meals(
    site: str, database_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback, in tests
    ingest(database_url, "gate-1", [1], CARD_ALICE, "in")
    ingest(database_url, "cant-1", [1], CARD_AMIR, "canteen")
    day = _day(database_url)
    cid, secret = _client(database_url, ["attendance.read", "meals.read"])
    oauth = OAuth2Session(client=BackendApplicationClient(client_id=cid))
    token = oauth.fetch_token(f"{site}/token", client_id=cid, client_secret=secret)
    assert token["token_type"] == "Bearer" and token["expires_in"] == 600
    assert token["scope"] == ["attendance.read", "meals.read"]
    r = oauth.get(f"{site}/schools/s1/attendance", params={"day": day})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["person_id"], i["passages"]) for i in items] == [(world.ids["alice"], 1)]
    assert "full_name" not in items[0] and "Alice" not in r.text
    r = oauth.get(f"{site}/schools/s1/meals", params={"day": day})
    meals = r.json()["items"]
    assert [(m["event_id"], m["person_id"], m["meal_kind"]) for m in meals] == [
        ("cant-1:5:1", world.ids["amir"], "reduced")]  # fmt: skip
    assert _audit(database_url, f"platform:{cid}") == [
        ("login", "platform_clients", cid),
        ("export", "platform_attendance", f"s1:{day}"),
        ("export", "platform_meals", f"s1:{day}"),
    ]


def _token(site: str, cid: str, secret: str, **form: str) -> requests.Response:
    return requests.post(f"{site}/token", data={"grant_type": "client_credentials", **form},
                         auth=(cid, secret), timeout=10)  # fmt: skip


def _get(site: str, path: str, token: str) -> requests.Response:
    return requests.get(f"{site}{path}", params={"day": "2025-10-09"},
                        headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip


def test_the_refusals(site: str, database_url: str, world: World) -> None:
    cid, secret = _client(database_url, ["attendance.read"])
    r = _token(site, cid, "wrong")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = _token(site, cid, secret, scope="meals.read")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = requests.post(f"{site}/token", data={"grant_type": "password"}, auth=(cid, secret),
                      timeout=10)  # fmt: skip
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    token = _token(site, cid, secret).json()["access_token"]
    assert _get(site, "/schools/s1/attendance", token).status_code == 200
    r = _get(site, "/schools/s1/meals", token)  # not in its scopes
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert _get(site, "/schools/s2/attendance", token).status_code == 404  # not its school
    root = site.removesuffix("/api/v1/platform")
    login = {"username": "root@qadam.kz", "password": PASSWORD}
    user_token = requests.post(f"{root}/api/v1/auth/token", data=login, timeout=10).json()
    r = _get(site, "/schools/s1/attendance", user_token["access_token"])  # a user's token
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert requests.get(f"{site}/schools/s1/attendance", params={"day": "2025-10-09"},
                        timeout=10).status_code == 401  # fmt: skip
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE platform_tokens SET expires_at = now() - interval '1 second'")
    assert _get(site, "/schools/s1/attendance", token).status_code == 401  # expired
    token = _token(site, cid, secret).json()["access_token"]
    with psycopg.connect(database_url) as conn:
        clients.disable(conn, cid)
    assert _get(site, "/schools/s1/attendance", token).status_code == 401  # disabled
    assert _token(site, cid, secret).status_code == 401
    exports = [a for a in _audit(database_url, f"platform:{cid}") if a[0] == "export"]
    assert len(exports) == 1  # only the read that succeeded


def test_registration_refuses_unknown_schools_and_scopes(database_url: str, world: World) -> None:
    from cloud.domain.errors import Invalid

    with psycopg.connect(database_url) as conn:
        for schools, scopes in ((["s1", "nope"], ["meals.read"]), (["s1"], ["events.write"]),
                                ([], ["meals.read"])):  # fmt: skip
            with pytest.raises(Invalid):
                clients.create(conn, "X", schools, scopes)
        assert conn.execute("SELECT count(*) FROM platform_clients").fetchone() == (0,)
