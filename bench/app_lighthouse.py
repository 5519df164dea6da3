"""app_lighthouse: Lighthouse scores of the parents' app's pages (issue #16: accessibility >= 0.95,
best practices >= 0.95, performance >= 0.9), mobile emulation, against Debian's Chromium.

The same Lighthouse (npm, exact pin) and scoring as ``console_lighthouse``; the pages: the app's
sign-in, the invitation link's password form, and a guardian's feed of one child with 60 taps
(the session cookie as an extra header). Written, not asserted (they vary with the load)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

import psycopg
import uvicorn

from bench.common import Row, database, free_port
from bench.console_lighthouse import GOALS, _lighthouse, _scores
from cloud.api.app import create_app
from cloud.settings import Settings


def _populate(url: str) -> tuple[str, str]:
    """A guardian of one bench pupil with taps in, out and at the canteen over two days: their
    session and a live invitation's token."""

    def digest(t: str) -> bytes:
        return hashlib.sha256(t.encode()).digest()

    with psycopg.connect(url) as conn:
        conn.execute("SELECT ensure_event_partitions(now() - interval '3 days', now())")
        child = conn.execute(
            "SELECT id FROM people WHERE school_id = 'b1' ORDER BY id LIMIT 1"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
            " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at)"
            " SELECT 'lh-gate', 1, i, 'b1', %s, '0123456789abcdef', 'tap',"
            " (ARRAY['in', 'canteen', 'out'])[i %% 3 + 1], 'granted',"
            " CASE WHEN i %% 3 = 1 THEN 'free' ELSE 'ok' END,"
            " now() - i * interval '40 min', true, 0, now() - i * interval '40 min'"
            " FROM generate_series(1, 60) i",
            (child,),
        )
        gid = conn.execute(
            "INSERT INTO users (email, password_hash, role, locale)"
            " VALUES ('mum@bench.test', 'x', 'guardian', 'kk') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)",
                     (gid, child))  # fmt: skip
        session, invite = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        day = "now() + interval '1 day'"
        conn.execute(f"INSERT INTO sessions (token_hash, user_id, expires_at)"
                     f" VALUES (%s, %s, {day})", (digest(session), gid))  # fmt: skip
        conn.execute(f"INSERT INTO guardian_invitations (token_hash, guardian_id, expires_at)"
                     f" VALUES (%s, %s, {day})", (digest(invite), gid))  # fmt: skip
    return session, invite


def run(repeat: int = 3) -> list[Row]:
    binary = _lighthouse()
    with database(0) as url:
        session, invite = _populate(url)
        pages = {"/app/kk/login": None, f"/app/invite/{invite}?lang=kk": None,
                 "/app/kk/": session}  # fmt: skip
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(
            create_app(Settings(database_url=url, auth_required=True)),
            host="127.0.0.1", port=port, log_level="warning"))  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            found: dict[tuple[str, str], list[float]] = {}
            for _ in range(repeat):
                for page, token in pages.items():
                    got = _scores(binary, f"http://127.0.0.1:{port}{page}", token)
                    name = "/app/invite/…" if page.startswith("/app/invite/") else page
                    for cat, score in got.items():
                        found.setdefault((name, cat), []).append(score)
        finally:
            server.should_exit = True
            thread.join(10)
    return [
        Row(f"{page} {cat} (lowest of {repeat})", min(scores), "score",
            goal=f">= {GOALS[cat]}")
        for (page, cat), scores in found.items()
    ]  # fmt: skip
