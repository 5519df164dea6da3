"""push_sender: what one Web Push costs the sender's CPU (issue #16's latency goal; D28-N found
the sender, not a queue, to be the limit on 2 cores).

Both runs encrypt every message for its own subscription (RFC 8291), sign VAPID once per origin
and POST from 32 threads, at most 16 to one origin, as cloud/push/service.py does, to a push
endpoint in another process (bench/push_sink.py: it only answers 201, so what is timed is the
sender). Ours posts through cloud/push/http.py (keep-alive http.client connections); the
baseline through httpx.Client with the same keep-alive limits, the client used before. Reported:
the sender process's CPU per push (user + system, all threads) and pushes per second. After
each run the endpoint's record is checked: every message arrived once, and a sample decrypts
with its browser's key to the plaintext that was sent.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Row, median
from bench.push_sink import SinkProcess

MESSAGES = 3_000
THREADS = 32
PER_ORIGIN = 16
SAMPLE = 50


class _Httpx:
    """The baseline: the client cloud/push/service.py used before (D28-N)."""

    def __init__(self, timeout_s: float) -> None:
        import httpx

        self.httpx = httpx
        self.client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS),
        )

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            resp = self.client.post(url, content=body, headers=headers)
        except self.httpx.HTTPError as exc:
            raise OSError(str(exc)) from exc
        return resp.status_code, resp.content

    def close(self) -> None:
        self.client.close()


def _browsers(n: int) -> list[Any]:
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from cloud.push.webpush import Subscription

    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        out.append((key, Subscription(i, f"push/{i}", point, os.urandom(16))))
    return out


def one_run(client: Any, browsers: list[Any], port: int) -> tuple[float, float]:
    """(pushes per second, CPU ms per push) for MESSAGES posts through ``client``."""
    from dataclasses import replace

    from cloud.push.webpush import VapidKey, send

    vapid = VapidKey(VapidKey.generate_pem(), "mailto:bench@qadam.kz")
    gate = threading.BoundedSemaphore(PER_ORIGIN)
    subs = [replace(sub, endpoint=f"http://127.0.0.1:{port}/{sub.endpoint}") for _, sub in browsers]

    def post(i: int) -> int:
        with gate:
            body = json.dumps({"n": i, "title": "Push pupil", "body": "arrived 08:01"}).encode()
            return send(client, vapid, subs[i], body, ttl_s=3600).status

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(post, range(min(200, MESSAGES))))  # warm the connections
        cpu0, t0 = time.process_time(), time.perf_counter()
        statuses = list(pool.map(post, range(MESSAGES)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    bad = [s for s in statuses if s != 201]
    if bad:
        raise RuntimeError(f"{len(bad)} posts were not answered 201: {bad[:5]}")
    return MESSAGES / wall, cpu * 1000 / MESSAGES


def _check(received: list[dict[str, Any]], browsers: list[Any]) -> None:
    """Every message arrived, once per run, and a sample decrypts to what was sent."""
    import http_ece

    counts: dict[str, int] = {}
    for r in received:
        counts[r["path"]] = counts.get(r["path"], 0) + 1
    missing = [i for i in range(MESSAGES) if f"/push/{i}" not in counts]
    if missing:
        raise RuntimeError(f"{len(missing)} messages never reached the endpoint")
    last = {r["path"]: r for r in received}
    for i in range(0, MESSAGES, MESSAGES // SAMPLE):
        key, sub = browsers[i]
        plain = http_ece.decrypt(
            base64.b64decode(last[f"/push/{i}"]["body"]),
            private_key=key,
            auth_secret=sub.auth,
            version="aes128gcm",
        )
        if json.loads(plain)["n"] != i:
            raise RuntimeError(f"message {i} decrypted to another message")


def run(repeat: int = 3) -> list[Row]:
    from cloud.push.http import HttpPool

    browsers = _browsers(MESSAGES)
    rate: dict[str, list[float]] = {"ours": [], "base": []}
    cpu: dict[str, list[float]] = {"ours": [], "base": []}
    for r in range(repeat):
        for name in ("base", "ours") if r % 2 == 0 else ("ours", "base"):
            sink = SinkProcess()
            client = HttpPool(10, max_idle_per_origin=PER_ORIGIN) if name == "ours" else _Httpx(10)
            try:
                per_s, ms = one_run(client, browsers, sink.port)
            finally:
                client.close()
                received = sink.received()
            _check(received, browsers)
            rate[name].append(per_s)
            cpu[name].append(ms)
            print(f"run {r + 1}/{repeat} {name}: {per_s:,.0f} pushes/s, {ms:.2f} ms CPU a push",
                  flush=True)  # fmt: skip
    return [
        Row("sender CPU per push (http.client keep-alive pool)", median(cpu["ours"]), "ms",
            baseline=median(cpu["base"]), goal="<= 1 ms (baseline: httpx.Client)"),
        Row("pushes per second, one process, 32 threads", median(rate["ours"]), "pushes/s",
            baseline=median(rate["base"]), goal="informational (baseline: httpx.Client)"),
    ]  # fmt: skip
