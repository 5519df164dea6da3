"""OTA in the cloud (docs/ota.md): a release is stored only when signed by the release key, a
rollout offers it to the canaries first, pauses by itself when a canary rolls back (the rest are
never offered it), reaches everyone when the canaries confirm, and the fleet view shows each
board's firmware and rollout state. The boards' side: tests/firmware, tests/e2e/test_ota_e2e.py."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.domain import registry
from cloud.ota import rollouts
from cloud.settings import Settings
from cloud.workers.ota_push import chunk, trial_ack
from tests.cloud.api_world import World, build, login_all
from tools.release import public_key, sign

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"qadam test release key").digest())
OTHER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"someone else").digest())
IMAGE = bytes(range(256)) * 40


def _world(url: str, key: str | None) -> Iterator[tuple[TestClient, World]]:
    w = build(url)
    s = Settings(database_url=url, auth_required=True, ota_public_key=key)
    with TestClient(create_app(s)) as c:
        login_all(c, w, url)
        yield c, w


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World]]:
    yield from _world(database_url, public_key(KEY))


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("version", "image_b64", "sha256", "signature")}


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def test_release_is_stored_only_with_the_release_keys_signature(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    h = w.auth("platform_admin")
    good = sign(KEY, "2.0.0", IMAGE)
    bad_key = sign(OTHER, "2.0.0", IMAGE)
    other_image = dict(good, image_b64=base64.b64encode(IMAGE[:-1] + b"x").decode())
    other_version = dict(good, version="2.0.1")  # the signature covers the version
    for doc, field in ((bad_key, "signature"), (other_image, "sha256"),
                       (other_version, "signature")):  # fmt: skip
        r = c.post("/api/v1/ota/releases", json=_body(doc), headers=h)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", field], r.text
    r = c.post("/api/v1/ota/releases", json=_body(good), headers=w.auth("school_admin"))
    assert r.status_code == 403
    assert _count(database_url, "ota_releases") == 0  # nothing refused was stored
    r = c.post("/api/v1/ota/releases", json=_body(good), headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["size"] == len(IMAGE) and r.json()["sha256"] == good["sha256"]
    assert c.post("/api/v1/ota/releases", json=_body(good), headers=h).status_code == 409
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM audit_log WHERE entity = 'ota_releases'"
        ).fetchone()
    assert row is not None and row[0] == 1


def test_no_release_key_configured_refuses_every_release(database_url: str) -> None:
    for c, w in _world(database_url, None):
        r = c.post("/api/v1/ota/releases", json=_body(sign(KEY, "2.0.0", IMAGE)),
                   headers=w.auth("platform_admin"))  # fmt: skip
        assert r.status_code == 422 and "no release key" in r.text


def _devices(url: str, n: int) -> list[str]:
    names = [f"b{i:02d}" for i in range(n)]
    with psycopg.connect(url) as conn:
        for d in names:
            registry.register_device(conn, d, "s1", "entrance", "door", "mfrc522")
    return names


def _status(url: str, device: str, **doc: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        return rollouts.on_status(conn, device, {"v": 1, "online": True, **doc})


def _drive(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return sorted(d for d, _ in rollouts.drive(conn))


def _rollout(c: TestClient, w: World, version: str, devices: list[str]) -> dict[str, Any]:
    h = w.auth("platform_admin")
    assert c.post("/api/v1/ota/releases", json=_body(sign(KEY, version, IMAGE)),
                  headers=h).status_code == 201  # fmt: skip
    r = c.post("/api/v1/ota/rollouts", headers=h,
               json={"version": version, "devices": devices, "canaries": devices[:2]})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_a_canary_rollback_pauses_the_rollout_and_the_rest_never_get_it(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    devs = _devices(database_url, 10)
    for d in devs:
        _status(database_url, d, fw="1.0.0", slot="a")
    ro = _rollout(c, w, "2.0.0", devs)
    assert ro["state"] == "canary" and [t["canary"] for t in ro["targets"]][:3] == [1, 1, 0]
    assert _drive(database_url) == devs[:2]  # only the canaries are offered it
    assert _drive(database_url) == []  # and not again before RESEND_S
    rid = ro["release_id"]
    _status(database_url, devs[0], fw="1.0.0", slot="a", ota={"id": rid, "off": 4096})
    _status(database_url, devs[0], fw="2.0.0", slot="b", trial=2)
    _status(database_url, devs[1], fw="1.0.0", slot="a", rb="2.0.0")  # it went back
    assert _drive(database_url) == []
    r = c.get(f"/api/v1/ota/rollouts/{ro['id']}", headers=w.auth("platform_admin")).json()
    assert r["state"] == "paused" and "b01 rolled_back" in r["paused_reason"], r
    states = {t["device_id"]: t["state"] for t in r["targets"]}
    assert states["b00"] == "trial" and states["b01"] == "rolled_back"
    assert {states[d] for d in devs[2:]} == {"pending"}
    fleet = {f["device_id"]: f for f in c.get("/api/v1/ota/fleet?school_id=s1",
                                              headers=w.auth("school_admin")).json()}
    assert fleet["b01"]["version"] == "1.0.0" and fleet["b01"]["rolled_back"] == "2.0.0"
    assert fleet["b00"]["trial"] == 2 and fleet["b00"]["rollout_state"] == "paused"
    assert fleet["b05"]["target_state"] == "pending"
    # The status of a board the rollout covers says nothing new: still paused, nobody offered.
    assert _drive(database_url) == []
    # A school admin sees the boards of their school only; only platform admins roll out.
    mine = c.get("/api/v1/ota/fleet", headers=w.auth("school_admin")).json()
    assert {f["school_id"] for f in mine} == {"s1"} and len(mine) == 11
    assert c.post(f"/api/v1/ota/rollouts/{ro['id']}/resume",
                  headers=w.auth("school_admin")).status_code == 403  # fmt: skip
    # Cancelled, the boards it never reached can be put in the next rollout.
    h = w.auth("platform_admin")
    busy = _rollout_status(c, w, "2.0.1", devs)
    assert busy == 409
    r = c.post(f"/api/v1/ota/rollouts/{ro['id']}/cancel", headers=h, json={"reason": "bad"})
    assert r.json()["state"] == "cancelled", r.text
    assert {t["state"] for t in r.json()["targets"][2:]} == {"cancelled"}
    assert _rollout_status(c, w, "2.0.1", devs[2:], publish=False) == 201


def _rollout_status(c: TestClient, w: World, version: str, devices: list[str],
                    publish: bool = True) -> int:  # fmt: skip
    h = w.auth("platform_admin")
    if publish:
        assert c.post("/api/v1/ota/releases", json=_body(sign(KEY, version, IMAGE)),
                      headers=h).status_code == 201  # fmt: skip
    return c.post("/api/v1/ota/rollouts", headers=h,
                  json={"version": version, "devices": devices}).status_code  # fmt: skip


def test_a_good_release_reaches_the_canaries_then_everyone(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    devs = _devices(database_url, 5)
    for d in devs:
        _status(database_url, d, fw="1.0.0", slot="a")
    ro = _rollout(c, w, "2.0.0", devs)
    assert _drive(database_url) == devs[:2]
    for d in devs[:2]:
        _status(database_url, d, fw="2.0.0", slot="b", trial=2)
        _status(database_url, d, fw="2.0.0", slot="b")  # confirmed by its first cloud ack
    assert _drive(database_url) == devs[2:]  # the canaries are done: the rest now
    h = w.auth("platform_admin")
    paused = c.post(f"/api/v1/ota/rollouts/{ro['id']}/pause", headers=h, json={"reason": "x"})
    assert paused.status_code == 200 and paused.json()["state"] == "paused", paused.text
    _status(database_url, devs[2], fw="2.0.0", slot="b")
    assert c.post(f"/api/v1/ota/rollouts/{ro['id']}/resume", headers=h).json()["state"] == (
        "rolling"
    )
    for d in devs[3:]:
        _status(database_url, d, fw="2.0.0", slot="b")
    _drive(database_url)
    r = c.get(f"/api/v1/ota/rollouts/{ro['id']}", headers=h).json()
    assert r["state"] == "done" and {t["state"] for t in r["targets"]} == {"done"}
    # A board already in an unfinished rollout cannot be put in another.
    assert c.post("/api/v1/ota/releases", json=_body(sign(KEY, "3.0.0", IMAGE)),
                  headers=h).status_code == 201  # fmt: skip
    r2 = c.post("/api/v1/ota/rollouts", headers=h, json={"version": "3.0.0", "devices": devs[:1],
                                                          "canaries": ["zz"]})
    assert r2.status_code == 422


def test_chunks_and_trial_ack_wire_format() -> None:
    c = chunk(7, IMAGE, 1024)
    assert c[:4] == b"QOC1" and c[4:8] == (7).to_bytes(4, "big") and c[12:] == IMAGE[1024:2048]
    assert trial_ack(None, "b00", "2.0.0") == b'{"v":1,"trial":"2.0.0"}'
    signed = trial_ack(b"k" * 32, "b00", "2.0.0")
    assert b'"mac":"' in signed


def test_a_canary_that_does_not_confirm_in_time_pauses_the_rollout(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    devs = _devices(database_url, 4)
    for d in devs:
        _status(database_url, d, fw="1.0.0", slot="a")
    ro = _rollout(c, w, "2.0.0", devs)
    assert _drive(database_url) == devs[:2]
    _status(database_url, devs[0], fw="2.0.0", slot="b")  # one canary confirmed
    _status(database_url, devs[1], fw="2.0.0", slot="b", trial=2)  # the other still on trial
    with psycopg.connect(database_url) as conn:  # the deadline (1,800 s by default) passes
        conn.execute("UPDATE ota_rollouts SET stage_started_at = now() - interval '1 hour'")
    assert _drive(database_url) == []
    r = c.get(f"/api/v1/ota/rollouts/{ro['id']}", headers=w.auth("platform_admin")).json()
    assert r["state"] == "paused" and r["paused_reason"] == "canary b01 did not confirm in time"
    assert {t["state"] for t in r["targets"] if not t["canary"]} == {"pending"}
