"""Card keys, the whitelist file (format 1), the registry and settings."""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Any

import psycopg
import pytest
from cloud_helpers import CARD_A, CARD_B, Seed
from pydantic import ValidationError

from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.domain.whitelist import build_whitelist
from cloud.settings import Settings


def test_card_key_vector() -> None:
    site, uid = bytes(range(32)), bytes.fromhex("04a1b2c3d4e5f6")
    assert card_key(site, uid) == hashlib.sha256(site + uid).hexdigest()[:16]
    # fixed vector so a change of the construction cannot go unnoticed
    assert card_key(b"site", bytes.fromhex("deadbeef")) == "e8be5770dc7a437c"
    k = card_key(b"k" * 32, b"\x01\x02\x03\x04")
    assert len(k) == 16 and k == k.lower() and int(k, 16) >= 0
    assert card_key(b"a" * 32, b"\x01\x02\x03\x04") != card_key(b"b" * 32, b"\x01\x02\x03\x04")
    with pytest.raises(TypeError):
        card_key("site", b"\x01")  # type: ignore[arg-type]


def _parse(blob: bytes) -> tuple[int, list[tuple[bytes, int, int, int]]]:
    magic, fmt, rsize, version, count, crc = struct.unpack_from("<4sHHIII", blob, 0)
    assert (magic, fmt, rsize) == (b"QWL1", 1, 12)
    assert blob[20:32] == bytes(12)
    body = blob[32:]
    assert len(body) == 12 * count and zlib.crc32(body) == crc
    recs = [struct.unpack_from("<8sBBH", body, 12 * i) for i in range(count)]
    return version, recs


def test_whitelist_format() -> None:
    entries = [
        ("ffffffffffffffff", "staff", 0, 0, 0),
        ("0000000000000001", "student", 3, 7, 0xBEEF),
        ("8000000000000000", "student", 1, 0, 1),
    ]
    blob = build_whitelist(42, entries)
    version, recs = _parse(blob)
    assert version == 42 and len(blob) == 32 + 36
    assert [r[0].hex() for r in recs] == [
        "0000000000000001",
        "8000000000000000",
        "ffffffffffffffff",
    ]
    assert recs[0][1:] == (1 | (3 << 2), 7, 0xBEEF)
    assert recs[1][1:] == (1 | (1 << 2), 0, 1)
    assert recs[2][1:] == (2, 0, 0)


def test_empty_whitelist() -> None:
    blob = build_whitelist(0, [])
    assert len(blob) == 32 and _parse(blob) == (0, [])


@pytest.mark.parametrize(
    "bad",
    [
        [(CARD_A, "student", 0, 0, 0), (CARD_A, "staff", 0, 0, 0)],  # duplicate
        [(CARD_A.upper(), "student", 0, 0, 0)],
        [(CARD_A, "parent", 0, 0, 0)],
        [(CARD_A, "student", 4, 0, 0)],
        [(CARD_A, "student", 0, 256, 0)],
        [(CARD_A, "student", 0, 0, 65536)],
    ],
)
def test_whitelist_rejects_bad_entries(bad: list[Any]) -> None:
    with pytest.raises(ValueError):
        build_whitelist(1, bad)


def test_whitelist_version_range() -> None:
    with pytest.raises(ValueError):
        build_whitelist(2**32, [])


def test_compile_whitelist(database_url: str, seed: Seed) -> None:
    with psycopg.connect(database_url) as conn:
        carol = registry.add_person(
            conn, "s1", "staff", "Carol", meal_category=2, access_profile=3, allergen_mask=5
        )
        registry.add_card(conn, carol, "1111111111111111")
        registry.add_card(conn, carol, "2222222222222222")
        registry.revoke_card(conn, "2222222222222222")
        blob = registry.compile_whitelist(conn, "s1", 9)
    version, recs = _parse(blob)
    assert version == 9
    assert [(r[0].hex(), r[1], r[2], r[3]) for r in recs] == [
        (CARD_A, 1, 0, 0),  # Alice, student
        ("1111111111111111", 2 | (2 << 2), 3, 5),  # Carol; her revoked card and Bob (s2) absent
    ]
    assert CARD_B not in blob.hex()


def test_registry_validates(database_url: str, seed: Seed) -> None:
    with psycopg.connect(database_url) as conn:
        with pytest.raises(ValueError):
            registry.register_device(conn, "Bad_Id", "s1", "x", "door", "mfrc522")
        with pytest.raises(ValueError):
            registry.register_device(conn, "gate-9", "s1", "x", "window", "mfrc522")
        with pytest.raises(ValueError):
            registry.register_device(conn, "gate-9", "s1", "x", "door", "rc", direction="up")
        with pytest.raises(ValueError):
            registry.add_person(conn, "s1", "parent", "X")
        with pytest.raises(ValueError):
            registry.add_card(conn, seed.alice, "xyz")
        with pytest.raises(ValueError):
            registry.create_school(conn, "s3", "S3", b"short")


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QADAM_MQTT_PORT", "1884")
    monkeypatch.setenv("QADAM_TOPIC_PREFIX", "school-7")
    s = Settings()
    assert s.mqtt_port == 1884 and s.topic_prefix == "school-7"
    assert (s.ingest_batch_max, s.ingest_flush_ms, s.ingest_queue_max) == (500, 50, 10000)
    assert s.ingest_client_id == "qadam-ingest" and s.http_port == 8000


@pytest.mark.parametrize(
    ("env", "value"),
    [("QADAM_MQTT_PORT", "70000"), ("QADAM_HTTP_PORT", "web"), ("QADAM_TOPIC_PREFIX", "a/#")],
)
def test_settings_fail_fast(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError):
        Settings()


def test_settings_unknown_keyword_fails() -> None:
    with pytest.raises(ValidationError):
        Settings(mqtt_prot=1)  # type: ignore[call-arg]
