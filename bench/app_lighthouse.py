"""app_lighthouse: Lighthouse scores of the parents' app's pages (issue #16: accessibility >= 0.95,
best practices >= 0.95, performance >= 0.9), mobile emulation, against Debian's Chromium.

The same Lighthouse (npm, exact pin) and scoring as ``console_lighthouse``; the pages: the app's
sign-in, the invitation link's password form, a guardian's feed of one child with 60 taps, and
that child's menu (a blocked set) and allergy restrictions (D28-G) (the session cookie as an
extra header). Written, not asserted (they vary with the load)."""

from __future__ import annotations

import hashlib
import secrets

import psycopg

from bench.common import Row, database
from bench.console_lighthouse import score_pages


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
        # today's menu (D28-G): a milk porridge set the child's milk restriction blocks, a lunch
        dishes = [
            conn.execute(
                "INSERT INTO dishes (school_id, name_kk, name_ru, name_en, price, allergens,"
                " allergen_mask) VALUES ('b1', %s, %s, %s, %s, %s, %s) RETURNING id",
                d,
            ).fetchone()[0]
            for d in (  # type: ignore[index]
                ("Сүт ботқасы", "Молочная каша", "Milk porridge", 250, ["milk"], 64),
                ("Шай", "Чай", "Tea", 50, [], 0),
                ("Палау", "Плов", "Plov", 650, [], 0),
            )
        ]
        for period, ids in (("breakfast", dishes[:2]), ("lunch", dishes[2:])):
            conn.execute(
                "INSERT INTO menus (school_id, day, period, dish_ids) VALUES"
                " ('b1', (now() AT TIME ZONE 'Asia/Almaty')::date, %s, %s)",
                (period, ids),
            )
        conn.execute("UPDATE people SET allergen_mask = 64 WHERE id = %s", (child,))
        session, invite = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        day = "now() + interval '1 day'"
        conn.execute(f"INSERT INTO sessions (token_hash, user_id, expires_at)"
                     f" VALUES (%s, %s, {day})", (digest(session), gid))  # fmt: skip
        conn.execute(f"INSERT INTO guardian_invitations (token_hash, guardian_id, expires_at)"
                     f" VALUES (%s, %s, {day})", (digest(invite), gid))  # fmt: skip
    return session, invite


def _name(page: str) -> str:
    return "/app/invite/…" if page.startswith("/app/invite/") else page


def run(repeat: int = 3) -> list[Row]:
    with database(0) as url:
        session, invite = _populate(url)
        pages = {"/app/kk/login": None, f"/app/invite/{invite}?lang=kk": None,
                 "/app/kk/": session, "/app/kk/menu": session,
                 "/app/kk/restrictions": session}  # fmt: skip
        return score_pages(url, pages, repeat, _name)
