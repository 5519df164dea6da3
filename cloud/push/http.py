"""Keep-alive HTTP/1.1 connections to push services, for many small POSTs from a thread pool.

Why not httpx (which the Social Wallet connector uses): a Web Push POST is one small request and
an empty answer, and at a thousand a second the client's own work is most of a push's CPU:
httpx spent ~1.0 ms a POST where the standard library's ``http.client`` spends ~0.25 ms (D28-N;
``python -m bench push_sender`` measures both in one run). What httpx adds beyond a keep-alive
pool (redirects, cookies, HTTP/2, proxies) a push service never needs.

Connections are kept per origin (scheme, host, port) and reused last-in first-out, so a burst
reuses the connections that are still warm. A kept connection the push service has closed in the
meantime fails on its next request before any answer: that request is sent once more on a fresh
connection (the request never reached the service, or reached it without an answer, which the
outbox's at-least-once delivery allows anyway). HTTPS verifies the service's certificate and
host name against the system's CA store.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from urllib.parse import urlsplit

# a kept connection the server closed fails like this before any answer arrives
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)

Origin = tuple[str, str, int]


class HttpPool:
    def __init__(
        self,
        timeout_s: float,
        *,
        max_idle_per_origin: int = 16,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_idle_per_origin = max_idle_per_origin
        self._ssl = ssl_context or ssl.create_default_context()
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self.opened = 0  # connections made, for tests and logs

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST ``body``; the status and the answer's body. Raises OSError or
        http.client.HTTPException when no answer came (refused, timed out, broken)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url[:100]!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        key: Origin = (scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn, reused = self._take(key)
        try:
            status, data, keep = self._exchange(conn, target, body, headers)
        except _STALE:
            conn.close()
            if not reused:
                raise
            conn = self._new(key)
            try:
                status, data, keep = self._exchange(conn, target, body, headers)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        if keep:
            self._give(key, conn)
        else:
            conn.close()
        return status, data

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _exchange(
        self, conn: http.client.HTTPConnection, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, bool]:
        conn.request("POST", target, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()  # read to the end, or the connection cannot carry the next request
        return resp.status, data, not resp.will_close

    def _take(self, key: Origin) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            stack = self._idle.get(key)
            if stack:
                return stack.pop(), True
        return self._new(key), False

    def _give(self, key: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            stack = self._idle.setdefault(key, [])
            if len(stack) < self.max_idle_per_origin:
                stack.append(conn)
                return
        conn.close()

    def _new(self, key: Origin) -> http.client.HTTPConnection:
        scheme, host, port = key
        self.opened += 1
        if scheme == "https":
            return http.client.HTTPSConnection(
                host, port, timeout=self.timeout_s, context=self._ssl
            )
        return http.client.HTTPConnection(host, port, timeout=self.timeout_s)
