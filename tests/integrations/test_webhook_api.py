"""Registering webhooks through the API (D29-I): only https URLs on the school's allowlist,
which only the district or platform admin changes; a secret shown once; rotate and delete;
every change audited; other schools' subscribers out of reach."""

from __future__ import annotations

from typing import Any

import psycopg
from api_world import PASSWORD, World
from webhook_world import api

H = "/api/v1/schools/s1/webhook-hosts"
W = "/api/v1/schools/s1/webhooks"


def _audit(url: str, entity: str) -> list[tuple[str, Any, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT action, before, after FROM audit_log WHERE entity = %s ORDER BY id", (entity,)
        ).fetchall()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_url_off_the_allowlist_or_not_https_is_refused_and_nothing_changes(
    database_url: str, world: World
) -> None:
    with api(database_url, world, loopback=False) as c:
        s, d = world.auth("school_admin"), world.auth("district_authority")
        hook = {"url": "https://hooks.example.kz/qadam", "events": ["passage"]}
        r = c.post(W, json=hook, headers=s)
        assert r.status_code == 422
        assert "not on this school's webhook allowlist" in r.text, r.text
        # the school admin cannot widen the list; the district admin can
        r = c.put(H, json={"hosts": ["hooks.example.kz"]}, headers=s)
        assert r.status_code == 403
        r = c.put(H, json={"hosts": ["Hooks.Example.KZ", "bad host!"]}, headers=d)
        assert r.status_code == 422 and "not a host name" in r.text
        assert c.get(H, headers=s).json()["hosts"] == []  # a refused list changed nothing
        r = c.put(H, json={"hosts": ["Hooks.Example.KZ."]}, headers=d)
        assert r.json()["hosts"] == ["hooks.example.kz"]
        for url, why in (
            ("http://hooks.example.kz/qadam", "must be an https URL"),
            ("http://127.0.0.1:8080/x", "must be an https URL"),  # loopback: tests only
            ("https://user:pw@hooks.example.kz/x", "credentials"),
            ("https://evil.example.kz/x", "not on this school's webhook allowlist"),
            ("https://hooks.example.kz.evil.kz/x", "not on this school's webhook allowlist"),
        ):
            r = c.post(W, json={"url": url, "events": ["passage"]}, headers=s)
            assert r.status_code == 422 and why in r.text, (url, r.text)
        r = c.post(W, json={"url": hook["url"], "events": ["weather"]}, headers=s)
        assert r.status_code == 422
        assert c.get(W, headers=s).json() == []
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT count(*) FROM webhook_subscriptions").fetchone() == (0,)
        assert _audit(database_url, "webhook_subscriptions") == []


def test_register_list_rotate_delete_with_the_secret_shown_once(
    database_url: str, world: World
) -> None:
    with api(database_url, world, loopback=False) as c:
        s = world.auth("school_admin")
        c.put(H, json={"hosts": ["hooks.example.kz"]}, headers=world.auth("platform_admin"))
        r = c.post(W, json={"url": "https://hooks.example.kz/acs",
                            "events": ["meal", "passage", "meal"]}, headers=s)  # fmt: skip
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["events"] == ["meal", "passage"] and made["secret"].startswith("whsec_")
        listed = c.get(W, headers=s).json()
        assert [h["id"] for h in listed] == [made["id"]]
        assert "secret" not in listed[0] and made["secret"] not in str(listed)
        r = c.post(f"/api/v1/webhooks/{made['id']}/rotate-secret", headers=s)
        assert r.status_code == 200
        rotated = r.json()["secret"]
        assert rotated != made["secret"] and r.json()["rotated_at"] is not None
        with psycopg.connect(database_url) as conn:
            stored = conn.execute("SELECT secret FROM webhook_subscriptions").fetchone()
        assert stored == (rotated,)  # deliveries are signed with the new one from now on
        # school s3 is not in this admin's scope, nor in the district admin's (d1)
        r = c.get("/api/v1/schools/s3/webhooks", headers=world.auth("district_authority"))
        assert r.status_code == 404
        r = c.delete(f"/api/v1/webhooks/{made['id']}", headers=s)
        assert r.status_code == 204
        assert c.get(W, headers=s).json() == []
        r = c.delete(f"/api/v1/webhooks/{made['id']}", headers=s)
        assert r.status_code == 404
    audit = _audit(database_url, "webhook_subscriptions")
    assert [a for a, _, _ in audit] == ["create", "update", "delete"]
    assert not any(made["secret"] in str(x) or rotated in str(x) for x in audit)
    assert _audit(database_url, "webhook_hosts")[0][2] == {"hosts": ["hooks.example.kz"]}


def test_an_admin_of_another_school_cannot_reach_a_subscriber(
    database_url: str, world: World
) -> None:
    with api(database_url, world, loopback=False) as c:
        c.put(H, json={"hosts": ["hooks.example.kz"]}, headers=world.auth("platform_admin"))
        made = c.post(W, json={"url": "https://hooks.example.kz/a", "events": ["meal"]},
                      headers=world.auth("school_admin")).json()  # fmt: skip
        login = {"username": "admin3@qadam.kz", "password": PASSWORD}
        token = c.post("/api/v1/auth/token", data=login)
        other = {"Authorization": f"Bearer {token.json()['access_token']}"}
        for method, path in (("POST", f"/api/v1/webhooks/{made['id']}/rotate-secret"),
                             ("DELETE", f"/api/v1/webhooks/{made['id']}"),
                             ("GET", W)):  # fmt: skip
            r = c.request(method, path, headers=other)
            assert r.status_code == 404, (method, path, r.text)
        assert len(c.get(W, headers=world.auth("school_admin")).json()) == 1
