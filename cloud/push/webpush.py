"""One Web Push message to one subscription: RFC 8291 encryption, RFC 8292 VAPID, RFC 8030 POST.

The payload is encrypted for the subscriber's key (aes128gcm, RFC 8188): the push service in
between (Google, Mozilla, Apple, Microsoft) sees neither the child's name nor the event, only an
opaque blob, its size and the endpoint. VAPID signs a short-lived JWT with the platform's own
P-256 key so the push service can tie our subscriptions to us and reject anyone else.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from dataclasses import dataclass
from http.client import HTTPException
from typing import Protocol
from urllib.parse import urlsplit

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

# A push service must accept 4096 bytes of payload (RFC 8030 section 7.2); the encryption adds a
# 86-byte header and a 17-byte tag and padding delimiter to what we pass in.
MAX_PLAINTEXT = 3993
VAPID_LIFETIME_S = 12 * 3600  # RFC 8292: no more than 24 hours
# A signed JWT is reused for its push service until this long before its ``exp`` (RFC 8292 §2
# ties a token to the origin in ``aud`` and an ``exp``, not to one request); the margin keeps a
# slow POST from arriving with an expired token.
VAPID_REFRESH_S = 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Subscription:
    id: int
    endpoint: str
    p256dh: bytes  # the client's uncompressed P-256 public key (65 bytes)
    auth: bytes  # the client's 16-byte authentication secret


@dataclass(frozen=True)
class PushResult:
    status: int  # HTTP status; 0 = no answer (connection error, timeout)
    error: str = ""

    @property
    def delivered(self) -> bool:
        return self.status in (200, 201, 202)

    @property
    def gone(self) -> bool:
        """The subscription has expired or was withdrawn: never use it again."""
        return self.status in (404, 410)

    @property
    def retry(self) -> bool:
        """Worth another try later: no answer, throttled, or the service's own failure."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class VapidKey:
    """The platform's VAPID signing key (a P-256 private key, PEM)."""

    def __init__(self, pem: bytes, subject: str) -> None:
        self._vapid = Vapid02.from_pem(pem)
        self.subject = subject
        public = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        # What a browser passes as `applicationServerKey` to PushManager.subscribe().
        self.application_server_key = b64url(public)
        # push service origin -> (Authorization header, its exp): one ES256 signature per
        # origin and ~11 hours instead of one per message
        self._signed: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def generate_pem() -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def authorization(self, endpoint: str, now: float | None = None) -> str:
        """The ``Authorization`` header for the push service of ``endpoint``: a JWT for its
        origin, signed once and reused until VAPID_REFRESH_S before it expires."""
        aud = origin(endpoint)
        at = time.time() if now is None else now
        with self._lock:
            cached = self._signed.get(aud)
            if (
                cached is not None
                and cached[1] - VAPID_LIFETIME_S <= at < cached[1] - VAPID_REFRESH_S
            ):
                return cached[0]
            exp = int(at + VAPID_LIFETIME_S)
            header: str = self._vapid.sign({"aud": aud, "exp": exp, "sub": self.subject})[
                "Authorization"
            ]
            self._signed[aud] = (header, exp)
            return header


def origin(endpoint: str) -> str:
    """The push service's origin, the VAPID ``aud`` (RFC 8292 §2, RFC 6454 §4): scheme and host
    lower-cased, the default port dropped, no user info (``https://Push.Example:443/x`` ->
    ``https://push.example``)."""
    parts = urlsplit(endpoint)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    default = {"https": 443, "http": 80}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def encrypt(plaintext: bytes, sub: Subscription) -> bytes:
    """aes128gcm body for ``sub``: a fresh sender key pair and salt per message (RFC 8291)."""
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(f"push payload of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT}")
    sender = ec.generate_private_key(ec.SECP256R1())
    body: bytes = http_ece.encrypt(
        plaintext,
        salt=os.urandom(16),
        private_key=sender,
        dh=sub.p256dh,
        auth_secret=sub.auth,
        version="aes128gcm",
    )
    return body


class Poster(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """The answer's status and body; raises OSError/HTTPException when none came."""


def send(
    client: Poster,
    vapid: VapidKey,
    sub: Subscription,
    plaintext: bytes,
    *,
    ttl_s: int,
    urgency: str = "normal",
    topic: str | None = None,
) -> PushResult:
    """POST one encrypted message; the answer is classified, never raised."""
    headers = {
        "Authorization": vapid.authorization(sub.endpoint),
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": str(ttl_s),
        "Urgency": urgency,
    }
    if topic:
        headers["Topic"] = topic  # a newer message with the same topic replaces an undelivered one
    try:
        status, answer = client.post(sub.endpoint, encrypt(plaintext, sub), headers)
    except (OSError, HTTPException) as exc:
        return PushResult(0, f"{type(exc).__name__}: {exc}")
    if status in (200, 201, 202):
        return PushResult(status)
    return PushResult(status, answer[:300].decode("utf-8", "replace"))
