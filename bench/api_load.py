"""api_load: the API under the morning burst (issue #19), with the ingest storing taps meanwhile.

One throwaway database: a school of 5,000 pupils, 2,000,000 taps over 60 days (generated
server-side, then vacuumed), 2,000 guardians (one child each) and 50 school admins, each with a
session. The load generator is wrk (Debian's package, in C: it takes little of the CPU the
system under test needs), one Lua script picking per request a random user and one of the mix:

- guardian: the child's feed (GET /api/v1/events?person=CHILD&limit=50) 40 %, the menu
  (GET /api/v1/schools/b1/menu) 15 %, the balance (GET /api/v1/people/CHILD/balance) 15 %;
- school admin: today's events (GET /api/v1/events?school=b1&since=TODAY&limit=50) 15 %, the
  live list (GET /api/v1/events?limit=50) 5 %, devices 5 %, people?limit=50 5 %.

Reported per level: answered 2xx per second (the throughput that counts), all answers per second,
p50/p99 of wrk's latency, failed requests and the ingest's p99. Levels: 100, 1,000 and 2,000
connections for 20 s each, against `python -m cloud.api` as
configured by default (2 processes, the pool) and then against the path before #19 as the
baseline, in the same run (1 process, a connection per request, no token cache, no admission
queue). All clients come from 127.0.0.1, so the per-address limit is off in both (the per-account
one is on). Failed = every answer that is not 2xx/3xx plus socket errors and wrk's timeouts (10 s).

Meanwhile 20 boards publish 100 taps/s (one per message) through Mosquitto to the ingest
(`python -m cloud.ingest`); its tap-to-ack (publish to the application ack, sent after the
commit) is reported per level.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.common import (
    REPO,
    Boards,
    Consumer,
    Row,
    database,
    device_ids,
    free_port,
    median,
    mosquitto,
    percentile,
)

PUPILS = 5_000
EVENTS = 2_000_000
DAYS = 60
GUARDIANS = 2_000
ADMINS = 50
LEVELS = (100, 1_000, 2_000)
SECONDS = 20
TAP_RATE = 100
BOARDS = 20
WRK_THREADS = 2

OURS = {"api_workers": "2", "api_rate_client": ""}
BASELINE = {"api_workers": "1", "db_pool_size": "0", "auth_cache_ttl_s": "0", "api_nice": "0",
            "api_max_inflight": "10000", "api_rate_client": ""}  # fmt: skip

LUA = r"""
local guardians = {%(guardians)s}
local children = {%(children)s}
local admins = {%(admins)s}
local today = "%(today)s"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

local function get(path, token)
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
end

function request()
  local r = math.random(100)
  if r <= 70 then
    local i = math.random(#guardians)
    if r <= 40 then
      return get("/api/v1/events?limit=50&person=" .. children[i], guardians[i])
    elseif r <= 55 then
      return get("/api/v1/schools/b1/menu", guardians[i])
    end
    return get("/api/v1/people/" .. children[i] .. "/balance", guardians[i])
  end
  local a = admins[math.random(#admins)]
  if r <= 85 then
    return get("/api/v1/events?limit=50&school=b1&since=" .. today, a)
  elseif r <= 90 then
    return get("/api/v1/events?limit=50", a)
  elseif r <= 95 then
    return get("/api/v1/devices", a)
  end
  return get("/api/v1/people?limit=50", a)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local by_status = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do by_status[tostring(k)] = (by_status[tostring(k)] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(by_status) do table.insert(parts, string.format('"%%s": %%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d, ' ..
    '"by_status": {%%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", ")))
end
"""


def _populate(url: str) -> dict[str, Any]:
    """The school's 5,000 pupils (database() made ~1,000), their taps, guardians and admins;
    returns the users' tokens and the children."""
    import hashlib
    import secrets

    from cloud.auth.passwords import hash_password

    pw = hash_password(secrets.token_urlsafe(12))
    with psycopg.connect(url) as conn:
        have = conn.execute("SELECT count(*) FROM people").fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO people (school_id, kind, full_name)"
            " SELECT 'b1', 'student', 'Extra ' || i FROM generate_series(1, %s) i",
            (PUPILS - have,),
        )
        conn.execute(
            "INSERT INTO cards (card_key, person_id)"
            " SELECT lpad(to_hex(1000000 + id), 16, '0'), id FROM people p"
            " WHERE NOT EXISTS (SELECT 1 FROM cards c WHERE c.person_id = p.id)"
        )
        conn.execute(
            "SELECT ensure_event_partitions(now() - interval '%s days', now() + interval '2 days')"
            % (DAYS + 1)
        )
        conn.execute(
            "CREATE TEMP TABLE pp AS SELECT row_number() OVER (ORDER BY p.id) - 1 AS n, p.id,"
            " c.card_key FROM people p JOIN cards c ON c.person_id = p.id AND c.revoked_at IS NULL"
        )
        n_pp = conn.execute("SELECT count(*) FROM pp").fetchone()[0]  # type: ignore[index]
        # taps in time order up to now, over the school's 4 devices and its pupils
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
            " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at)"
            " SELECT 'bench-' || (i %% 4), 1, i / 4 + 1, 'b1', pp.id, pp.card_key, 'tap', 'in',"
            " 'granted', 'ok', t, true, 0, t"
            " FROM generate_series(0, %(n)s - 1) i"
            " JOIN pp ON pp.n = i %% %(pp)s,"
            " LATERAL (SELECT now() - interval '%(days)s days'"
            "   + (i::float8 / %(n)s * %(days)s) * interval '1 day' AS t) x",
            {"n": EVENTS, "pp": n_pp, "days": DAYS},
        )
        tokens: dict[str, list[Any]] = {"guardians": [], "children": [], "admins": []}
        children = [r[0] for r in conn.execute(
            "SELECT id FROM pp ORDER BY n LIMIT %s", (GUARDIANS,)).fetchall()]  # fmt: skip
        for role, n in (("guardian", GUARDIANS), ("school_admin", ADMINS)):
            for i in range(n):
                uid = conn.execute(
                    "INSERT INTO users (email, password_hash, role, school_id)"
                    " VALUES (%s, %s, %s, %s) RETURNING id",
                    (f"{role}{i}@bench.test", pw, role,
                     "b1" if role == "school_admin" else None),
                ).fetchone()[0]  # type: ignore[index]  # fmt: skip
                token = secrets.token_urlsafe(32)
                conn.execute(
                    "INSERT INTO sessions (token_hash, user_id, expires_at)"
                    " VALUES (%s, %s, now() + interval '1 day')",
                    (hashlib.sha256(token.encode()).digest(), uid),
                )
                if role == "guardian":
                    conn.execute(
                        "INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)",
                        (uid, children[i]),
                    )
                    tokens["guardians"].append(token)
                    tokens["children"].append(children[i])
                else:
                    tokens["admins"].append(token)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return tokens


def _script(tokens: dict[str, list[Any]], today: str) -> Path:
    def lua_list(xs: list[Any]) -> str:
        return ",".join(f'"{x}"' for x in xs)

    text = LUA % {"guardians": lua_list(tokens["guardians"]),
                  "children": lua_list(tokens["children"]),
                  "admins": lua_list(tokens["admins"]), "today": today}  # fmt: skip
    f = tempfile.NamedTemporaryFile("w", prefix="qadam-bench-wrk-", suffix=".lua", delete=False)
    f.write(text)
    f.close()
    return Path(f.name)


@contextmanager
def api(url: str, extra: dict[str, str]) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ, QADAM_DATABASE_URL=url, QADAM_INSECURE_DEV="1",
               PYTHONPATH=str(REPO))  # fmt: skip
    env.update({f"QADAM_{k.upper()}": v for k, v in extra.items()})
    log = tempfile.NamedTemporaryFile(prefix="qadam-bench-api-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloud.api", "--port", str(port)], env=env, cwd=REPO,
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(Path(log.name).read_text()[-2000:])
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not start")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        os.unlink(log.name)


def wrk(base: str, script: Path, connections: int, seconds: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(script), base],
        capture_output=True, text=True, timeout=seconds + 120,
    )  # fmt: skip
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    r: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    ok = sum(v for k, v in r["by_status"].items() if k[0] in "23")
    r["failed"] = (r["requests"] - ok) + r["connect"] + r["read"] + r["write"] + r["timeout"]
    r["ok_per_s"] = ok / (r["duration_us"] / 1e6)
    if ok == 0:
        # nothing useful came back (wrk counts a timeout only when it gave up on a request it
        # sent, not for the connections it never got to send on): at least every connection's
        # request failed, and none was answered within the run
        r["failed"] = max(r["failed"], connections)
        r["p50_us"] = r["p99_us"] = seconds * 1e6
    return r


class Taps:
    """Boards publishing TAP_RATE taps/s to the ingest from a thread; tap-to-ack per window."""

    def __init__(self, port: int, prefix: str) -> None:
        self.boards = Boards(port, prefix)
        self.devices = device_ids(BOARDS)
        self.stop = threading.Event()
        self.seq = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        i = 0
        while not self.stop.is_set():
            delay = t0 + i / TAP_RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.boards.publish(self.devices[i % BOARDS], 5000, i // BOARDS + 1, 1)
            i += 1

    def window(self) -> float:
        return time.perf_counter()

    def p99_since(self, t0: float, t1: float) -> tuple[float, int]:
        """p99 tap-to-ack (ms) of the taps sent between t0 and t1 (waits for their acks)."""
        keys = [k for k, t in list(self.boards.sent.items()) if t0 <= t < t1]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(k not in self.boards.acked for k in keys):
            time.sleep(0.1)
        lat = [self.boards.acked[k] - self.boards.sent[k] for k in keys if k in self.boards.acked]
        missing = len(keys) - len(lat)
        return (percentile(lat, 99) * 1000 if lat else float("nan")), missing

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.boards.close()


def _levels(base: str, script: Path, taps: Taps, label: str) -> dict[int, dict[str, Any]]:
    wrk(base, script, 50, 3)  # warm-up: pool, prepared statements, caches
    out = {}
    for c in LEVELS:
        t0 = taps.window()
        r = wrk(base, script, c, SECONDS)
        r["ingest_p99_ms"], r["ingest_missing"] = taps.p99_since(t0, taps.window())
        print(f"{label} {c:>5} conns: {r['rps']:7.0f} req/s ({r['ok_per_s']:.0f} 2xx/s) "
              f"p50 {r['p50_us'] / 1000:6.0f} ms p99 {r['p99_us'] / 1000:6.0f} ms "
              f"failed {r['failed']:>6} {r['by_status']} "
              f"socket/timeout {r['connect']}/{r['read']}/{r['write']}/{r['timeout']}; "
              f"ingest p99 {r['ingest_p99_ms']:.0f} ms", flush=True)  # fmt: skip
        out[c] = r
        time.sleep(3)  # let the queue drain before the next level
    return out


def run(repeat: int = 1) -> list[Row]:
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with database(BOARDS) as url, mosquitto() as mq:
        t = time.perf_counter()
        tokens = _populate(url)
        print(f"{EVENTS:,} events, {PUPILS:,} pupils in {time.perf_counter() - t:.0f} s",
              flush=True)  # fmt: skip
        today = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime())
        script = _script(tokens, today)
        prefix = f"b{uuid.uuid4().hex[:8]}"
        cons = Consumer("ingest", url, mq, prefix)
        taps = None
        try:
            cons.wait_subscribed()
            taps = Taps(mq, prefix)
            for r in range(repeat):
                for label, extra in (("ours", OURS), ("baseline", BASELINE)):
                    with api(url, extra) as base:
                        for c, res in _levels(base, script, taps, label).items():
                            runs.setdefault((label, c), []).append(res)
                print(f"run {r + 1}/{repeat} done", flush=True)
        finally:
            if taps is not None:
                taps.close()
            cons.stop()
            script.unlink()

    def med(label: str, c: int, key: str) -> float:
        return median([float(x[key]) for x in runs[(label, c)]])

    rows = []
    for c in LEVELS:
        rows += [
            Row(f"{c:,} conns: answered 2xx/s", med("ours", c, "ok_per_s"), "req/s",
                baseline=med("baseline", c, "ok_per_s"), goal=">= 5x baseline"),
            Row(f"{c:,} conns: all answers/s (503s included)", med("ours", c, "rps"), "req/s",
                baseline=med("baseline", c, "rps")),
            Row(f"{c:,} conns: p50", med("ours", c, "p50_us") / 1000, "ms",
                baseline=med("baseline", c, "p50_us") / 1000),
            Row(f"{c:,} conns: p99", med("ours", c, "p99_us") / 1000, "ms",
                baseline=med("baseline", c, "p99_us") / 1000,
                goal="<= 500 ms at 1,000" if c == 1_000 else ""),
            Row(f"{c:,} conns: failed requests", med("ours", c, "failed"), "requests",
                baseline=med("baseline", c, "failed"), goal="0 at 1,000" if c == 1_000 else ""),
            Row(f"{c:,} conns: ingest tap-to-ack p99 during the load",
                med("ours", c, "ingest_p99_ms"), "ms", baseline=med("baseline", c, "ingest_p99_ms"),
                goal="<= 250 ms"),
        ]  # fmt: skip
    return rows
