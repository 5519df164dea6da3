"""A fake Social Wallet: a real HTTP server (http.server in a thread, on a free port) speaking the
contract of docs/social-wallet.md, with faults on demand.

Faults, chosen per POST (by key first, then at random with a seeded generator):

* ``fail``    -> 500 before anything is stored;
* ``timeout`` -> the record *is* stored (accepted), then the server sleeps ``sleep_s`` before
  answering: the client times out and never learns the reference (a lost response);
* ``reject``  -> 422 with reason codes (remembered: the status query answers rejected).

It also validates what the contract requires (422 ``pupil_unknown``, ``price_missing``,
``invalid_field``, ``idempotency_key_mismatch``, ``idempotency_key_reused``; with
``require_bin`` also ``school_bin_missing``) and remembers every key: a POST of a key it has
already accepted answers 409 with the original reference (``idempotency_key_reused`` for another
body). A rejected key holds no record: the same body gets the same 422, a corrected body (a
resend after the data was fixed, D24-F) is judged afresh.
``accepted_posts[key]`` counts the 202s per key: the tests require exactly one each.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

Reasons = list[dict[str, str]]
CATEGORIES = ("free", "reduced", "paid")


@dataclass
class Stored:
    state: str  # accepted | rejected
    body: dict[str, Any]
    reference: str | None = None
    reasons: Reasons = field(default_factory=list)


class FakeSocialWallet:
    def __init__(
        self,
        *,
        fail_rate: float = 0.0,
        timeout_rate: float = 0.0,
        reject_rate: float = 0.0,
        fail_keys: dict[str, int] | None = None,  # key -> how many POSTs fail (500)
        timeout_keys: dict[str, int] | None = None,  # key -> how many POSTs time out
        reject_keys: dict[str, Reasons] | None = None,  # key -> reasons (422)
        sleep_s: float = 2.0,
        token: str | None = None,
        seed: int = 7,
        require_bin: bool = False,
    ) -> None:
        self.fail_rate = fail_rate
        self.timeout_rate = timeout_rate
        self.reject_rate = reject_rate
        self.fail_keys = dict(fail_keys or {})
        self.timeout_keys = dict(timeout_keys or {})
        self.reject_keys = dict(reject_keys or {})
        self.sleep_s = sleep_s
        self.token = token
        self.require_bin = require_bin
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.records: dict[str, Stored] = {}
        self.accepted_posts: Counter[str] = Counter()  # 202 answers per key
        self.posts: Counter[str] = Counter()  # every POST per key
        self.outcomes: Counter[str] = Counter()  # 202 / 409 / 422 / 500 / timeout
        self.status_queries = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    # -- lifecycle

    @property
    def url(self) -> str:
        """The base URL (still valid after stop(): then nothing listens there)."""
        assert self._url is not None, "not started"
        return self._url

    def start(self) -> FakeSocialWallet:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self._url = f"http://{host!s}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSocialWallet:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- helpers for tests

    def accept_directly(self, key: str, body: dict[str, Any]) -> str:
        """Store a record as if a POST had been accepted earlier; return its reference."""
        with self.lock:
            ref = "SW-" + uuid.uuid4().hex[:12].upper()
            self.records[key] = Stored("accepted", body, reference=ref)
            return ref

    def accepted_keys(self) -> set[str]:
        with self.lock:
            return {k for k, s in self.records.items() if s.state == "accepted"}

    # -- the contract

    def _fault(self, key: str) -> str | None:
        for name, table in (("fail", self.fail_keys), ("timeout", self.timeout_keys)):
            if table.get(key, 0) > 0:
                table[key] -= 1
                return name
        if key in self.reject_keys:
            return "reject"
        x = self.rng.random()
        if x < self.fail_rate:
            return "fail"
        if x < self.fail_rate + self.timeout_rate:
            return "timeout"
        if x < self.fail_rate + self.timeout_rate + self.reject_rate:
            return "reject"
        return None

    def post(self, key: str | None, body: Any) -> tuple[int, dict[str, Any], float]:
        """(status, JSON answer, seconds to sleep before answering)."""
        if not key:
            return 400, {"error": "Idempotency-Key header required"}, 0.0
        with self.lock:
            self.posts[key] += 1
            known = self.records.get(key)
            if known is not None and known.state == "rejected" and known.body != body:
                known = None  # a corrected record under the key of a rejected one
            if known is not None:
                if known.body != body:
                    self.outcomes["422"] += 1
                    reason = {"code": "idempotency_key_reused", "message": "different body"}
                    return 422, {"reasons": [reason]}, 0.0
                if known.state == "accepted":
                    self.outcomes["409"] += 1
                    return 409, {"reference": known.reference, "state": "accepted"}, 0.0
                self.outcomes["422"] += 1
                return 422, {"reasons": known.reasons}, 0.0
            fault = self._fault(key)
            if fault == "fail":
                self.outcomes["500"] += 1
                return 500, {"error": "internal error (fake)"}, 0.0
            reasons = self._validate(key, body, self.require_bin)
            if not reasons and fault == "reject":
                reasons = self.reject_keys.get(key) or [
                    {"code": "pupil_not_eligible", "message": "no benefit on this date (fake)"}
                ]
            if reasons:
                self.records[key] = Stored("rejected", body, reasons=reasons)
                self.outcomes["422"] += 1
                return 422, {"reasons": reasons}, 0.0
            ref = "SW-" + uuid.uuid4().hex[:12].upper()
            self.records[key] = Stored("accepted", body, reference=ref)
            self.accepted_posts[key] += 1
            if fault == "timeout":
                self.outcomes["timeout"] += 1
                return 202, {"reference": ref, "state": "accepted"}, self.sleep_s
            self.outcomes["202"] += 1
            return 202, {"reference": ref, "state": "accepted"}, 0.0

    @staticmethod
    def _validate(key: str, body: Any, require_bin: bool = False) -> Reasons:
        if not isinstance(body, dict):
            return [{"code": "invalid_field", "message": "body must be an object"}]
        out: Reasons = []
        if body.get("idempotency_key") != key:
            out.append({"code": "idempotency_key_mismatch", "message": "header != body"})
        school = body.get("school")
        if not isinstance(school, dict) or not school.get("id"):
            out.append({"code": "invalid_field", "message": "school.id"})
        elif require_bin and not school.get("bin"):
            out.append({"code": "school_bin_missing", "message": "school.bin is required"})
        pupil = body.get("pupil")
        if not isinstance(pupil, dict) or (not pupil.get("iin") and not pupil.get("person_id")):
            out.append({"code": "pupil_unknown", "message": "no IIN and no person id"})
        if body.get("meal_category") not in CATEGORIES:
            out.append({"code": "invalid_field", "message": "meal_category"})
        if not isinstance(body.get("occurred_at"), str):
            out.append({"code": "invalid_field", "message": "occurred_at"})
        if body.get("price") is None:
            out.append({"code": "price_missing", "message": "price is required"})
        return out

    def status(self, key: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.status_queries += 1
            known = self.records.get(key)
            if known is None:
                return 404, {"error": "unknown key"}
            if known.state == "accepted":
                return 200, {"state": "accepted", "reference": known.reference}
            return 200, {"state": "rejected", "reasons": known.reasons}


class _Handler(BaseHTTPRequestHandler):
    owner: FakeSocialWallet
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def _send(self, status: int, body: dict[str, Any], delay: float = 0.0) -> None:
        if delay:
            time.sleep(delay)
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): the answer is lost

    def _authorised(self) -> bool:
        token = self.owner.token
        if token is None or self.headers.get("Authorization") == f"Bearer {token}":
            return True
        self._send(401, {"error": "bad credentials"})
        return False

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorised():
            return
        if self.path.rstrip("/") != "/v1/meal-records":
            self._send(404, {"error": "no such endpoint"})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, {"error": "not JSON"})
            return
        status, answer, delay = self.owner.post(self.headers.get("Idempotency-Key"), body)
        self._send(status, answer, delay)

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        prefix = "/v1/meal-records/"
        if not self.path.startswith(prefix):
            self._send(404, {"error": "no such endpoint"})
            return
        status, answer = self.owner.status(unquote(self.path[len(prefix) :]))
        self._send(status, answer)


# -- a small world with canteen receipts, for the Social Wallet tests ---------------------------


def canteen_world(url: str) -> Any:
    """api_world's schools, users and people, plus canteen devices in s1 and s3, meal categories
    in s1 (free 0, reduced 200, paid 500), Alice on a free meal with an IIN, and a card for Cara
    (s3). Returns the api_world World."""
    import psycopg
    from api_world import build

    from cloud.domain import registry

    w = build(url)
    with psycopg.connect(url) as conn:
        registry.register_device(conn, "cant-1", "s1", "canteen", "canteen", "pn532")
        registry.register_device(conn, "cant-3", "s3", "canteen", "canteen", "pn532")
        conn.execute(
            "INSERT INTO meal_categories (school_id, kind, name, price) VALUES"
            " ('s1', 'reduced', 'Reduced', 200), ('s1', 'paid', 'Paid', 500),"
            " ('s3', 'paid', 'Paid', 450)"
        )
        conn.execute("UPDATE schools SET bin = %s WHERE id = 's1'", (BIN_S1,))
        conn.execute(
            "UPDATE people SET meal_category = 1, external_id = '120304500123' WHERE id = %s",
            (w.ids["alice"],),
        )
        conn.execute("UPDATE people SET meal_category = 2 WHERE id = %s", (w.ids["amir"],))
        registry.add_card(conn, w.ids["cara"], CARD_CARA)
    return w


CARD_CARA = "2222222222222222"
BIN_S1 = "940140000385"  # a published BIN (python-stdnum's example): a valid check digit


def ingest_meals(
    url: str, device: str, seqs: range | list[int], card: str, boot: int = 1, t0: int = 0
) -> int:
    """Store granted canteen taps through the real ingest writer (receipts, outbox rows and
    ledger rows in the ingest transaction). Returns how many events were new."""
    import psycopg
    from cloud_helpers import T0, batch_doc, dumps, topic

    from cloud.ingest.decode import Batch, decode
    from cloud.ingest.writer import write

    seqs = list(seqs)
    inserted = 0
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(0, len(seqs), 32):
            chunk = seqs[i : i + 32]
            doc = batch_doc(dev=device, boot=boot, seqs=chunk, card=card, reader="canteen")
            for ev in doc["events"]:
                ev["t"] = (t0 or T0) + ev["seq"]
            b = decode(topic("qadam", device), dumps(doc))
            assert isinstance(b, Batch), b
            inserted += write(conn, [b]).inserted
    return inserted
