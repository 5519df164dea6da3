"""Releases: a firmware image with its version, size, sha256 and Ed25519 signature.

The release key's private half stays with ``qadam release`` (tools/release.py) on the machine
that builds releases; the cloud holds the public key only (``Settings.ota_public_key``) and
refuses a release whose signature, size or sha256 does not match, so a stolen API account cannot
put an image on the boards the boards would take: they check the same signature themselves
(firmware/ota/fetch.py) with the key provisioning gave them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg.rows import dict_row

from cloud.domain.errors import Conflict, Invalid

MAX_SIZE = 1 << 20  # what a board's slot holds (firmware/ota/fetch.py MAX_SIZE)
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$")
COLUMNS = "id, version, size, sha256, signature, notes, created_by, created_at"


def signed_message(version: str, size: int, sha256_hex: str) -> bytes:
    """What a release's signature covers; the board builds the same bytes (ota/fetch.signed)."""
    return b"qadam-ota|%s|%d|%s" % (version.encode(), size, sha256_hex.encode())


def check_release(public_key_hex: str | None, version: str, image: bytes, sha256_hex: str,
                  signature_hex: str) -> None:  # fmt: skip
    """Raise Invalid with the reason unless the release is whole and signed by the release key."""
    if not public_key_hex:
        raise Invalid("signature", "no release key configured (QADAM_OTA_PUBLIC_KEY): refused")
    if not VERSION.match(version):
        raise Invalid("version", "1-32 characters of 0-9 A-Z a-z . + _ -, starting alphanumeric")
    if not 0 < len(image) <= MAX_SIZE:
        raise Invalid("image_b64", f"1 to {MAX_SIZE} bytes (a board's slot), got {len(image)}")
    if hashlib.sha256(image).hexdigest() != sha256_hex:
        raise Invalid("sha256", "does not match the image")
    try:
        sig = bytes.fromhex(signature_hex)
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(sig, signed_message(version, len(image), sha256_hex))
    except (ValueError, InvalidSignature):
        raise Invalid("signature", "not the release key's signature of this release") from None


def publish(conn: psycopg.Connection[Any], public_key_hex: str | None, version: str,
            image: bytes, sha256_hex: str, signature_hex: str, notes: str,
            actor: str) -> dict[str, Any]:  # fmt: skip
    check_release(public_key_hex, version, image, sha256_hex, signature_hex)
    with conn.cursor(row_factory=dict_row) as cur:
        try:
            with conn.transaction():
                cur.execute(
                    f"INSERT INTO ota_releases (version, size, sha256, signature, image, notes,"
                    f" created_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {COLUMNS}",
                    (version, len(image), sha256_hex, signature_hex, image, notes, actor),
                )
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"release {version} exists already") from None
        row = cur.fetchone()
    assert row is not None
    return row


def list_releases(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {COLUMNS} FROM ota_releases ORDER BY id DESC").fetchall()


def image(conn: psycopg.Connection[Any], release_id: int) -> bytes | None:
    row = conn.execute("SELECT image FROM ota_releases WHERE id = %s", (release_id,)).fetchone()
    return None if row is None else bytes(row[0])
