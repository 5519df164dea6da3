"""A fake e-journal on loopback that speaks OAuth2 client credentials (RFC 6749 §4.4: a token
endpoint taking HTTP Basic client authentication, bearer tokens that expire or are revoked) and
the generic REST adapter's API: ``PUT /api/schools/{id}/attendance/{day}``, deduplicated on
``Idempotency-Key``. It records what it was sent and how."""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

CLIENT_ID = "qadam-region-1"
CLIENT_SECRET = "s3cret-of-the-region"
PATH = re.compile(r"^/api/schools/([^/]+)/attendance/(\d{4}-\d{2}-\d{2})$")


class FakeEJournal:
    def __init__(self, token_lifetime_s: int = 3600) -> None:
        self.token_lifetime_s = token_lifetime_s
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> expiry (time.time)
        self.token_requests = 0
        self.days: dict[tuple[str, str], dict[str, Any]] = {}  # (school, day) -> last body
        self.keys: dict[str, int] = {}  # idempotency key -> times stored (must stay 1)
        self.puts: Counter[str] = Counter()  # answers by kind
        self.fail_next: list[int] = []  # statuses to answer the next PUTs with
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _answer(self, status: int, doc: dict[str, Any] | None = None) -> None:
                body = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._answer(*fake.token(self.path, self.headers.get("Authorization", ""), body))

            def do_PUT(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._answer(*fake.put(self.path, dict(self.headers.items()), body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeEJournal:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def revoke_all(self) -> None:
        with self.lock:
            self.tokens.clear()

    def token(self, path: str, auth: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if path != "/oauth/token":
            return 404, {"error": "not_found"}
        form = parse_qs(body.decode())
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        try:
            kind, b64 = auth.split(" ", 1)
            cid, _, secret = base64.b64decode(b64).decode().partition(":")
        except ValueError:
            return 401, {"error": "invalid_client"}
        if kind != "Basic" or (cid, secret) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {"error": "invalid_client"}
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.token_requests += 1
            self.tokens[token] = time.time() + self.token_lifetime_s
        return 200, {"access_token": token, "token_type": "Bearer",
                     "expires_in": self.token_lifetime_s}  # fmt: skip

    def put(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        m = PATH.match(path)
        if m is None:
            return 404, {"error": "not_found"}
        auth = headers.get("Authorization", "")
        with self.lock:
            token = auth.removeprefix("Bearer ")
            if not auth.startswith("Bearer ") or self.tokens.get(token, 0) < time.time():
                self.puts["401"] += 1
                return 401, {"error": "invalid_token"}
            if self.fail_next:
                status = self.fail_next.pop(0)
                self.puts[str(status)] += 1
                return status, {"error": "injected"}
            key = headers.get("Idempotency-Key")
            if not key:
                return 400, {"error": "Idempotency-Key required"}
            doc = json.loads(body)
            if (doc.get("school_id"), doc.get("date")) != m.groups():
                return 422, {"error": "the body is for another school or day"}
            if key in self.keys:
                self.puts["duplicate"] += 1
                return 200, {"reference": f"day-{key}"}
            self.keys[key] = 1
            self.days[m.groups()] = doc  # a later revision replaces the day
            self.puts["stored"] += 1
            return 200, {"reference": f"day-{key}"}
