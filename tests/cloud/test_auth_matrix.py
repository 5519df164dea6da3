"""Authorisation matrix: every API route x every role, generated from ``app.routes``.

EXPECTED is written from the issue's rules, not read from the code: a route added without an
entry here fails ``test_every_route_has_an_entry``. A denied role gets 403 before anything is
read or validated; an allowed role gets past the role gate (anything but 401/403, never 5xx).
Object scope (own school, own children) is tested in test_api_scope.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from api_world import ROLES, World, build, login_all
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.settings import Settings

P, D, S, C, T, G = ROLES
ALL = set(ROLES)
PUBLIC = "public"  # no token needed

EXPECTED: dict[tuple[str, str], set[str] | str] = {
    ("POST", "/api/v1/auth/token"): PUBLIC,
    ("GET", "/api/v1/auth/me"): ALL,
    ("POST", "/api/v1/auth/logout"): ALL,
    ("GET", "/api/v1/users"): {P, S},
    ("POST", "/api/v1/users"): {P, S},
    ("GET", "/api/v1/regions"): {P, D},
    ("POST", "/api/v1/regions"): {P},
    ("GET", "/api/v1/regions/{region_id}"): {P, D},
    ("PATCH", "/api/v1/regions/{region_id}"): {P},
    ("DELETE", "/api/v1/regions/{region_id}"): {P},
    ("GET", "/api/v1/districts"): {P, D},
    ("POST", "/api/v1/districts"): {P},
    ("GET", "/api/v1/districts/{district_id}"): {P, D},
    ("PATCH", "/api/v1/districts/{district_id}"): {P},
    ("DELETE", "/api/v1/districts/{district_id}"): {P},
    ("GET", "/api/v1/schools"): {P, D, S, C, T},
    ("POST", "/api/v1/schools"): {P},
    ("GET", "/api/v1/schools/{school_id}"): {P, D, S, C, T},
    ("PATCH", "/api/v1/schools/{school_id}"): {P, S},
    ("GET", "/api/v1/classes"): {P, D, S},
    ("POST", "/api/v1/classes"): {P, S},
    ("GET", "/api/v1/classes/{class_id}"): {P, D, S},
    ("PATCH", "/api/v1/classes/{class_id}"): {P, S},
    ("DELETE", "/api/v1/classes/{class_id}"): {P, S},
    ("GET", "/api/v1/people"): {P, D, S, C, G},
    ("POST", "/api/v1/people"): {P, S},
    ("GET", "/api/v1/people/{person_id}"): {P, D, S, C, G},
    ("PATCH", "/api/v1/people/{person_id}"): {P, S},
    ("DELETE", "/api/v1/people/{person_id}"): {P, S},
    ("GET", "/api/v1/people/{person_id}/cards"): {P, S, G},
    ("POST", "/api/v1/people/{person_id}/cards"): {P, S},
    ("POST", "/api/v1/cards/{card_key}/revoke"): {P, S, G},
    ("GET", "/api/v1/people/{person_id}/guardians"): {P, S},
    ("POST", "/api/v1/people/{person_id}/guardians"): {P, S},
    ("DELETE", "/api/v1/people/{person_id}/guardians/{guardian_id}"): {P, S},
    ("GET", "/api/v1/people/{person_id}/eligibility"): {P, D, S, C, G},
    ("POST", "/api/v1/people/{person_id}/eligibility"): {P, S},
    ("GET", "/api/v1/people/{person_id}/restrictions"): {P, S, C, G},
    ("PUT", "/api/v1/people/{person_id}/restrictions"): {P, G},
    ("GET", "/api/v1/devices"): {P, D, S, T},
    ("POST", "/api/v1/devices"): {P, S, T},
    ("GET", "/api/v1/devices/{device_id}"): {P, D, S, T},
    ("PATCH", "/api/v1/devices/{device_id}"): {P, S, T},
    ("DELETE", "/api/v1/devices/{device_id}"): {P, S, T},
    ("POST", "/api/v1/devices/{device_id}/claim-token"): {P, S, T},
    ("POST", "/api/v1/devices/{device_id}/revoke"): {P, S, T},
    ("POST", "/api/v1/provision"): PUBLIC,  # the claim token in the body is the credential
    ("GET", "/api/v1/devices/drift"): {P, D, S, T},
    ("GET", "/api/v1/whitelists/{school_id}"): {P, D, S, T},
    ("GET", "/api/v1/dishes"): {P, D, S, C, G},
    ("POST", "/api/v1/dishes"): {P, S},
    ("GET", "/api/v1/dishes/{dish_id}"): {P, D, S, C, G},
    ("PATCH", "/api/v1/dishes/{dish_id}"): {P, S},
    ("DELETE", "/api/v1/dishes/{dish_id}"): {P, S},
    ("GET", "/api/v1/meal-categories"): {P, D, S, C, G},
    ("POST", "/api/v1/meal-categories"): {P, S},
    ("PATCH", "/api/v1/meal-categories/{category_id}"): {P, S},
    ("GET", "/api/v1/ratings"): {P, D, S, C, G},
    ("POST", "/api/v1/ratings"): {P, G},
    ("GET", "/api/v1/push/key"): ALL,
    ("GET", "/api/v1/me/push-subscriptions"): {S, G},
    ("POST", "/api/v1/me/push-subscriptions"): {S, G},
    ("DELETE", "/api/v1/me/push-subscriptions/{sub_id}"): {S, G},
    ("GET", "/api/v1/consents"): {P, S, G},
    ("POST", "/api/v1/consents"): {P, S, G},
    ("POST", "/api/v1/consents/{consent_id}/withdraw"): {P, S, G},
    ("GET", "/api/v1/audit"): {P, S},
    ("POST", "/api/v1/schools/{school_id}/import"): {P, S},
    ("GET", "/api/v1/events"): {P, D, S, G},
    ("GET", "/api/v1/social-wallet/deliveries"): {P, D, S},
    ("GET", "/api/v1/social-wallet/summary"): {P, D, S},
    ("GET", "/api/v1/reports"): {P, D, S},
    ("GET", "/api/v1/reports/schools/{school_id}/meals"): {P, D, S},
    ("GET", "/api/v1/reports/schools/{school_id}/attendance"): {P, D, S},
    ("GET", "/api/v1/reports/schools/{school_id}/crosscheck"): {P, D, S},
    ("POST", "/api/v1/reports/schools/{school_id}/generate"): {P, S},
    ("POST", "/api/v1/reports/schools/{school_id}/approve"): {P, S},
    ("GET", "/api/v1/reports/districts/{district_id}/meals"): {P, D},
    ("POST", "/api/v1/people/{person_id}/balance/top-up"): {P, S},
    ("POST", "/api/v1/people/{person_id}/balance/refund"): {P, S},
    ("POST", "/api/v1/people/{person_id}/balance/correction"): {P, S},
    ("GET", "/api/v1/people/{person_id}/balance"): {P, S, C, G},
    ("GET", "/api/v1/people/{person_id}/ledger"): {P, S, G},
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/live"): PUBLIC,
}


def _walk(routes: list[Any]) -> Iterator[tuple[str, str]]:
    for r in routes:
        if isinstance(r, APIRoute):
            yield from ((m, r.path) for m in sorted(r.methods))
        elif hasattr(r, "original_router"):  # FastAPI >= 0.160 keeps included routers nested
            yield from _walk(r.original_router.routes)


def _routes() -> list[tuple[str, str]]:
    """Every route of the app: walked from app.routes, plus every operation in the OpenAPI
    document (in case the walk misses a kind of route)."""
    app = create_app(Settings(database_url="postgresql://unused/x", auth_required=True))
    found = set(_walk(app.routes))
    for path, ops in app.openapi()["paths"].items():
        found.update((m.upper(), path) for m in ops)
    assert len(found) > 50, found
    return sorted(found)


def test_every_route_has_an_entry() -> None:
    routes = _routes()
    missing = [r for r in routes if r not in EXPECTED]
    stale = [k for k in EXPECTED if k not in routes]
    assert not missing, f"routes without an authorisation entry: {missing}"
    assert not stale, f"entries for routes that no longer exist: {stale}"


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    w.ids["sub_id"] = 1  # no such push subscription: an allowed role gets 404, past the gate
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w


def _order(key: tuple[str, str]) -> tuple[int, str, str]:
    # destructive calls last, logout (which ends the token) at the very end
    method, path = key
    rank = (
        2
        if path.endswith("/logout")
        else 1
        if method == "DELETE" or path.endswith(("/revoke", "/withdraw"))
        else 0
    )
    return rank, path, method


def test_role_matrix(world: tuple[TestClient, World]) -> None:
    client, w = world
    failures: list[str] = []
    calls = 0
    for method, path in sorted(EXPECTED, key=_order):
        allowed = EXPECTED[(method, path)]
        url = re.sub(r"\{(\w+)\}", lambda m: str(w.ids[m.group(1)]), path)
        body = {} if method in ("POST", "PUT", "PATCH") and "token" not in path else None
        # anonymous
        r = client.request(method, url, json=body)
        if allowed != PUBLIC and r.status_code != 401:
            failures.append(f"anonymous {method} {path}: {r.status_code}, expected 401")
        if allowed == PUBLIC and r.status_code in (401, 403):
            failures.append(f"anonymous {method} {path}: {r.status_code} on a public route")
        # platform admin last: it is allowed everything and changes the most
        for role in sorted(ROLES, key=lambda x: x == P):
            r = client.request(method, url, json=body, headers=w.auth(role))
            calls += 1
            ok = allowed == PUBLIC or role in allowed
            if r.status_code >= 500:
                failures.append(f"{role} {method} {path}: {r.status_code} {r.text[:200]}")
            elif ok and r.status_code in (401, 403):
                failures.append(f"{role} {method} {path}: {r.status_code}, expected allowed")
            elif not ok and r.status_code != 403:
                failures.append(f"{role} {method} {path}: {r.status_code}, expected 403")
    assert calls == len(EXPECTED) * len(ROLES)
    assert not failures, "\n".join(failures)


def test_bad_and_expired_tokens_are_401(world: tuple[TestClient, World], database_url: str) -> None:
    import psycopg

    client, w = world
    for header in ("Bearer nope", "Bearer " + "x" * 500, "Basic abc", "Bearer "):
        r = client.get("/api/v1/people", headers={"Authorization": header})
        assert r.status_code == 401, (header, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/people", headers=w.auth(S)).status_code == 200
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
    assert client.get("/api/v1/people", headers=w.auth(S)).status_code == 401
