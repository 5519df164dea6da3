"""console_lighthouse: Lighthouse scores of the console's pages (issue #15: accessibility >= 0.95,
best practices >= 0.95, performance >= 0.9), mobile emulation, against Debian's Chromium.

Lighthouse comes from npm (bench/lighthouse/package.json and its lock, exact pin 12.2.3: later
12.x locks are refused by `npm ci` on this Node 20), installed on the first run into
bench/lighthouse/node_modules (git-ignored). The app runs on a loopback port with one school
(1,000 pupils), today's taps and attendance; the signed-in pages get the session cookie as an
extra header. The scores are written, not asserted (they vary with the machine's load).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import uvicorn

from bench.common import Row, database, free_port
from cloud.api.app import create_app
from cloud.settings import Settings

HERE = Path(__file__).resolve().parent / "lighthouse"
CHROMIUM = "/usr/bin/chromium"
PAGES = ("/login", "/today", "/live", "/people", "/reports", "/fleet", "/menu")
GOALS = {"performance": 0.9, "accessibility": 0.95, "best-practices": 0.95}


def _lighthouse() -> Path:
    binary = HERE / "node_modules" / ".bin" / "lighthouse"
    if not binary.exists():
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund",
                        "--loglevel=error"], cwd=HERE, check=True)  # fmt: skip
    return binary


def _populate(url: str) -> str:
    """Today's taps and attendance at the bench school b1 and a school admin's session."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT ensure_event_partitions(now() - interval '2 days', now())")
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
            " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at)"
            " SELECT 'lh-gate', 1, i, 'b1', p.id, '0123456789abcdef', 'tap', 'in',"
            " CASE WHEN i % 9 = 0 THEN 'denied' ELSE 'granted' END, 'ok',"
            " now() - i * interval '20 s', true, 0, now() - i * interval '20 s'"
            " FROM generate_series(1, 400) i"
            " JOIN LATERAL (SELECT id FROM people WHERE school_id = 'b1' ORDER BY id"
            "   OFFSET i LIMIT 1) p ON true"
        )
        conn.execute(
            "INSERT INTO attendance (person_id, day, school_id, first_in, last_out, passages)"
            " SELECT id, (now() AT TIME ZONE 'Asia/Almaty')::date, 'b1', now(), NULL, 1"
            " FROM people WHERE school_id = 'b1' LIMIT 900"
        )
        uid = conn.execute(
            "INSERT INTO users (email, password_hash, role, school_id)"
            " VALUES ('lh@bench.test', 'x', 'school_admin', 'b1') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        token = secrets.token_urlsafe(32)
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at)"
            " VALUES (%s, %s, now() + interval '1 day')",
            (hashlib.sha256(token.encode()).digest(), uid),
        )
    return token


def _scores(binary: Path, url: str, token: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = [str(binary), url, "--output=json", f"--output-path={out}", "--quiet",
               "--only-categories=performance,accessibility,best-practices",
               "--form-factor=mobile", "--chrome-flags=--headless=new --no-sandbox"]  # fmt: skip
        if token:
            cmd.append("--extra-headers=" + json.dumps({"Cookie": f"qadam_session={token}"}))
        subprocess.run(cmd, check=True, env={**os.environ, "CHROME_PATH": CHROMIUM},
                       stdout=subprocess.DEVNULL, timeout=300)  # fmt: skip
        report = json.loads(out.read_text())
    return {k: float(v["score"]) for k, v in report["categories"].items()}


def score_pages(
    url: str, pages: dict[str, str | None], repeat: int, name: Callable[[str], str] = str
) -> list[Row]:
    """The app on a loopback port over the database at ``url``; each page (with its session
    token, or None) scored ``repeat`` times; one row per page and category: the lowest score.
    The parents' app's bench (app_lighthouse) uses it too."""
    binary = _lighthouse()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(Settings(database_url=url, auth_required=True)),
        host="127.0.0.1", port=port, log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        # one plain request per page first: the first request of a fresh process imports and
        # compiles templates (seconds on a loaded machine), which is not the page's speed
        import httpx

        for page, token in pages.items():
            cookies = {"qadam_session": token} if token else None
            httpx.get(f"http://127.0.0.1:{port}{page}", cookies=cookies, timeout=60)
        found: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeat):
            for page, token in pages.items():
                got = _scores(binary, f"http://127.0.0.1:{port}{page}", token)
                for cat, score in got.items():
                    found.setdefault((name(page), cat), []).append(score)
    finally:
        server.should_exit = True
        thread.join(10)
    return [
        Row(f"{page} {cat} (lowest of {repeat})", min(scores), "score",
            goal=f">= {GOALS[cat]}")
        for (page, cat), scores in found.items()
    ]  # fmt: skip


def run(repeat: int = 3) -> list[Row]:
    with database(0) as url:
        token = _populate(url)
        pages = {page: None if page == "/login" else token for page in PAGES}
        return score_pages(url, pages, repeat)
