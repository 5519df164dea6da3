"""A webhook receiver as docs/integrations.md tells one to be written, on a real HTTP server on
loopback: it checks every request's signature and timestamp window with the subscriber's
secret, dedupes by ``Qadam-Webhook-Id`` and counts. Faults on demand: answer a status for the
first N requests of an id (e.g. 503), always answer a status for a path (e.g. 400), or hold the
answer after the effect (so a worker can be killed while a delivery is in flight)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cloud.webhooks import signing


class FakeReceiver:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}  # path -> secret
        self.fail_first: dict[str, tuple[int, int]] = {}  # path -> (status, how many per id)
        self.always: dict[str, int] = {}  # path -> status
        self.hold_s = 0.0  # sleep after recording an effect, before answering
        self.lock = threading.Lock()
        self.effects: dict[str, dict[str, Any]] = {}  # webhook id -> body (first accepted)
        self.effect_paths: dict[str, str] = {}
        self.requests: Counter[str] = Counter()  # webhook id -> requests that were signed right
        self.duplicates: Counter[str] = Counter()
        self.bad: list[str] = []  # why a request was refused (signature, window, ...)
        self.answers: Counter[int] = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                status = receiver.receive(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> FakeReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def receive(self, path: str, headers: dict[str, str], body: bytes) -> int:
        status = self._receive(path, headers, body)
        with self.lock:
            self.answers[status] += 1
        return status

    def _receive(self, path: str, headers: dict[str, str], body: bytes) -> int:
        wid = headers.get(signing.ID_HEADER, "")
        ts = headers.get(signing.TIMESTAMP_HEADER, "")
        sig = headers.get(signing.SIGNATURE_HEADER, "")
        secret = self.secrets.get(path)
        with self.lock:
            if secret is None or not wid:
                self.bad.append(f"{path}: no secret or no id")
                return 401
            if not signing.verify(secret, sig, ts, body, time.time()):
                self.bad.append(f"{path} {wid}: bad signature or outside the window")
                return 401
            doc = json.loads(body)
            if doc.get("id") != wid:
                self.bad.append(f"{path} {wid}: the body's id differs")
                return 400
            self.requests[wid] += 1
            if path in self.always:
                return self.always[path]
            fail = self.fail_first.get(path)
            if fail is not None and self.requests[wid] <= fail[1]:
                return fail[0]
            if wid in self.effects:  # a retry of something already done: the same answer
                self.duplicates[wid] += 1
                return 200
            self.effects[wid] = doc
            self.effect_paths[wid] = path
        if self.hold_s:
            time.sleep(self.hold_s)
        return 200

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [e for wid, d in self.effects.items() for e in d["events"]
                    if path is None or self.effect_paths[wid] == path]  # fmt: skip
