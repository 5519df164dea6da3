"""``qadam release``: build, sign and publish a firmware release for OTA (docs/ota.md).

    qadam release keygen KEYFILE
        a new Ed25519 release key: the private key (its 32-byte seed, hex) into KEYFILE, created
        with mode 0600 and never overwritten; the public key printed, for QADAM_OTA_PUBLIC_KEY
        (the cloud) and device.json "ota_pub" (the boards, written at provisioning)
    qadam release build --version V --key KEYFILE [--firmware DIR] --out FILE
        the firmware's ROMFS image (as `qadam flash --romfs` builds it), signed; FILE is the
        release document (version, size, sha256, signature, image_b64) the API takes as it is
    qadam release publish FILE --cloud URL --token TOKEN
        POST it to URL/api/v1/ota/releases (a platform admin's token)

The private key never leaves the machine that builds releases: the cloud only checks signatures
with the public half, and so does every board before it activates an image.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.ota.releases import VERSION, signed_message

REPO = Path(__file__).resolve().parent.parent


class ReleaseError(Exception):
    pass


def keygen(path: Path) -> str:
    """A new release key into `path` (mode 0600, refused if the file exists); -> public hex."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ReleaseError(f"{path} exists: a release key is never overwritten") from None
    with os.fdopen(fd, "w") as f:
        f.write(seed.hex() + "\n")
    return public_key(key)


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        seed = bytes.fromhex(path.read_text().strip())
        return Ed25519PrivateKey.from_private_bytes(seed)
    except (OSError, ValueError) as e:
        raise ReleaseError(f"{path}: not a release key ({e})") from None


def public_key(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ).hex()


def build_image(firmware: Path) -> bytes:
    """The ROMFS image of a firmware tree (tools/flash.py build_bundle, simulator/romfs.py)."""
    from simulator.romfs import build_image as romfs_image
    from tools.flash import build_bundle

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        build_bundle(bundle, firmware)
        return romfs_image(bundle)


def sign(key: Ed25519PrivateKey, version: str, image: bytes) -> dict[str, Any]:
    """The release document the API takes (POST /api/v1/ota/releases)."""
    if not VERSION.match(version):
        raise ReleaseError(f"version {version!r}: 1-32 of 0-9 A-Z a-z . + _ -")
    sha = hashlib.sha256(image).hexdigest()
    sig = key.sign(signed_message(version, len(image), sha)).hex()
    return {"version": version, "size": len(image), "sha256": sha, "signature": sig,
            "image_b64": base64.b64encode(image).decode()}  # fmt: skip


def publish(doc: dict[str, Any], cloud: str, token: str) -> dict[str, Any]:
    import httpx

    body = {k: doc[k] for k in ("version", "image_b64", "sha256", "signature")}
    r = httpx.post(cloud.rstrip("/") + "/api/v1/ota/releases", json=body,
                   headers={"Authorization": f"Bearer {token}"}, timeout=60)  # fmt: skip
    if r.status_code != 201:
        raise ReleaseError(f"the cloud refused the release: {r.status_code} {r.text}")
    out: dict[str, Any] = r.json()
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="release_cmd", required=True)
    k = sub.add_parser("keygen", help="make a release key (private key file, public key shown)")
    k.add_argument("keyfile", type=Path)
    b = sub.add_parser("build", help="build and sign a release of the firmware")
    b.add_argument("--version", required=True)
    b.add_argument("--key", required=True, type=Path)
    b.add_argument("--firmware", type=Path, default=REPO / "firmware")
    b.add_argument("--out", required=True, type=Path)
    u = sub.add_parser("publish", help="upload a built release to the cloud")
    u.add_argument("file", type=Path)
    u.add_argument("--cloud", required=True)
    u.add_argument("--token", required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.release_cmd == "keygen":
            print(keygen(args.keyfile))
        elif args.release_cmd == "build":
            doc = sign(load_key(args.key), args.version, build_image(args.firmware))
            args.out.write_text(json.dumps(doc))
            print(f"release {doc['version']}: {doc['size']} bytes sha256 {doc['sha256']}")
        else:
            out = publish(json.loads(args.file.read_text()), args.cloud, args.token)
            print(f"published release {out['version']} (id {out['id']})")
    except ReleaseError as e:
        print(f"qadam release: {e}", file=sys.stderr)
        return 2
    return 0
