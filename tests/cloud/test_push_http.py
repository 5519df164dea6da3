"""The push sender's keep-alive connections (cloud/push/http.py) against real servers on
loopback: connections are reused, a kept connection the server closed is replaced without losing
the POST, a refused or unverifiable service is an error the outbox retries (PushResult status 0),
and HTTPS checks the certificate."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cloud.push.http import HttpPool
from cloud.push.webpush import Subscription, VapidKey, send
from tests.tls_broker import make_pki


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@contextmanager
def _service(
    *, close_after: int = 0, tls: Path | None = None
) -> Iterator[tuple[str, list[tuple[str, bytes, int]]]]:
    """An HTTP/1.1 push endpoint; records (path, body, client port) per POST. ``close_after``:
    the server closes each connection after that many requests, without saying so (as an idle
    timeout on a push service does)."""
    seen: list[tuple[str, bytes, int]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.served = 0

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, body, self.client_address[1]))
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.served += 1
            if close_after and self.served >= close_after:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls / "good.pem", tls / "good.key")
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_connections_are_kept_and_reused():
    with _service() as (base, seen):
        pool = HttpPool(5)
        try:
            for i in range(20):
                status, _ = pool.post(f"{base}/push/{i}", b"x" * i, {"TTL": "60"})
                assert status == 201
        finally:
            pool.close()
    assert [p for p, _, _ in seen] == [f"/push/{i}" for i in range(20)]
    assert [len(b) for _, b, _ in seen] == list(range(20))
    assert pool.opened == 1
    assert len({port for _, _, port in seen}) == 1


def test_a_connection_the_server_closed_is_replaced_and_the_post_goes_through():
    with _service(close_after=2) as (base, seen):
        pool = HttpPool(5)
        try:
            statuses = [pool.post(f"{base}/push/{i}", b"m", {})[0] for i in range(7)]
        finally:
            pool.close()
    assert statuses == [201] * 7
    assert [p for p, _, _ in seen] == [f"/push/{i}" for i in range(7)]  # each once, in order
    assert pool.opened == 4  # a new connection after every second request


def test_a_refused_service_is_an_error_the_outbox_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        pool = HttpPool(2)
        with pytest.raises(OSError):
            pool.post(f"http://127.0.0.1:{port}/push/1", b"m", {})
        sub = Subscription(1, f"http://127.0.0.1:{port}/push/1", _point(), b"a" * 16)
        vapid = VapidKey(VapidKey.generate_pem(), "mailto:test@qadam.kz")
        result = send(pool, vapid, sub, b'{"t":1}', ttl_s=60)
    assert result.status == 0 and result.retry
    assert "ConnectionRefusedError" in result.error


def test_https_verifies_the_push_service_certificate(tmp_path):
    pki = make_pki(tmp_path / "pki")
    with _service(tls=pki) as (base, seen):
        stranger = HttpPool(5)  # the system's CAs do not know the test CA
        with pytest.raises(ssl.SSLCertVerificationError):
            stranger.post(f"{base}/push/1", b"m", {})
        trusting = HttpPool(5, ssl_context=ssl.create_default_context(cafile=pki / "ca.pem"))
        try:
            assert trusting.post(f"{base}/push/2", b"m", {})[0] == 201
        finally:
            trusting.close()
    assert [p for p, _, _ in seen] == ["/push/2"]


def test_only_http_urls_are_posted():
    with pytest.raises(ValueError, match="not an http"):
        HttpPool(1).post("file:///etc/passwd", b"", {})


def _point() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
