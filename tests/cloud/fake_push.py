"""A fake Web Push service and fake browsers: a real HTTP server (http.server in a thread, on a
free loopback port) that checks what a push service checks and decrypts like a browser does.

On each POST to ``/push/{token}`` it requires (RFC 8030/8291/8292): ``Content-Encoding:
aes128gcm``, a ``TTL`` header, ``Authorization: vapid t=<JWT>, k=<key>`` whose ES256 signature
verifies with ``k``, whose ``aud`` is this server's origin, whose ``exp`` is in the future and
at most 24 h away, with a ``mailto:``/``https:`` subject, and ``k`` equal to the
applicationServerKey the browser subscribed with (else 403, as real services answer). Then it
decrypts the body with the browser's private key and auth secret (a body it cannot decrypt is a
400) and keeps the plaintext.

Faults per token: ``gone`` answers 410; ``fail[token] = n`` answers 503 n times.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """One browser profile's subscription: its own P-256 key pair and auth secret."""

    token: str
    endpoint: str
    server_key: str  # the applicationServerKey it subscribed with
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))
    received: list[dict[str, Any]] = field(default_factory=list)

    def subscription_json(self, lang: str = "ru") -> dict[str, Any]:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": _b64(point), "auth": _b64(self.auth)},
            "lang": lang,
        }


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a backlog for a burst of connections (the default 5 refuses some)


class FakePushService:
    def __init__(self) -> None:
        self.browsers: dict[str, Browser] = {}
        self.gone: set[str] = set()
        self.fail: dict[str, int] = {}
        self.posts: list[tuple[str, int]] = []  # (token, status answered)
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakePushService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def browser(self, server_key: str) -> Browser:
        token = uuid.uuid4().hex
        b = Browser(token, f"{self.origin}/push/{token}", server_key)
        self.browsers[token] = b
        return b

    def statuses(self, token: str) -> list[int]:
        with self.lock:
            return [s for t, s in self.posts if t == token]

    # -- the protocol checks -----------------------------------------------------------------

    def _check_vapid(self, header: str, browser: Browser) -> str | None:
        """-> None if the Authorization header is valid for this browser, else why not."""
        if not header.startswith("vapid "):
            return "not a vapid authorization"
        params = dict(p.strip().split("=", 1) for p in header[6:].split(",") if "=" in p)
        token, key = params.get("t", ""), params.get("k", "")
        if key != browser.server_key:
            return "k is not the applicationServerKey of the subscription"
        try:
            head_b64, claims_b64, sig_b64 = token.split(".")
            head = json.loads(_unb64(head_b64))
            claims = json.loads(_unb64(claims_b64))
            sig = _unb64(sig_b64)
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(key))
        except (ValueError, json.JSONDecodeError):
            return "malformed JWT or key"
        if head.get("alg") != "ES256" or len(sig) != 64:
            return "JWT is not ES256"
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "JWT signature does not verify"
        now = time.time()
        if claims.get("aud") != self.origin:
            return f"aud {claims.get('aud')!r} is not {self.origin}"
        if not (now < claims.get("exp", 0) <= now + 24 * 3600):
            return "exp missing, past or more than 24 h ahead"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return "sub is not a mailto: or https: URI"
        return None

    def _receive(self, token: str, headers: Any, body: bytes) -> tuple[int, str]:
        browser = self.browsers.get(token)
        if browser is None or token in self.gone:
            return 410, "subscription expired"
        with self.lock:
            if self.fail.get(token, 0) > 0:
                self.fail[token] -= 1
                return 503, "try later"
        why = self._check_vapid(headers.get("Authorization", ""), browser)
        if why:
            return 403, why
        if headers.get("Content-Encoding") != "aes128gcm":
            return 415, "Content-Encoding must be aes128gcm"
        if not (headers.get("TTL") or "").isdigit():
            return 400, "TTL header required"
        try:
            plain = http_ece.decrypt(
                body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
            )
            message = json.loads(plain)
        except Exception as exc:  # any failure to decrypt is the sender's fault
            return 400, f"cannot decrypt: {type(exc).__name__}"
        browser.received.append(message)
        return 201, ""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            # keep-alive, as real push services allow (a new connection per message is not
            # what the sender pays in production; D28-N)
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                token = self.path.rsplit("/", 1)[-1] if self.path.startswith("/push/") else ""
                status, text = service._receive(token, self.headers, body)
                with service.lock:
                    service.posts.append((token, status))
                data = text.encode()
                self.send_response(status)
                if status == 201:
                    self.send_header("Location", f"{service.origin}/msg/{uuid.uuid4().hex}")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
