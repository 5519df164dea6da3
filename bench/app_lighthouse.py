"""app_lighthouse: Lighthouse scores of the parents' app's pages (issue #16: accessibility >= 0.95,
best practices >= 0.95, performance >= 0.9), mobile emulation, against Debian's Chromium.

The same Lighthouse (npm, exact pin) and scoring as ``console_lighthouse``; the pages: the app's
sign-in, the invitation link's password form, forgot password, the pupil's code; a guardian's
feed of one child with 60 taps, that child's menu (a blocked set), allergy restrictions
(D28-G), a dish's rating page, money, statistics, settings, platforms, the offline page; the
pupil's own feed and Learning tab (the session cookie as an extra header). Written, not asserted
(they vary with the load)."""

from __future__ import annotations

import hashlib
import secrets

import psycopg

from bench.common import Row, database
from bench.console_lighthouse import score_pages


def _populate(url: str) -> tuple[str, str, str, int]:
    """A guardian of one bench pupil with taps in, out and at the canteen over two days, and
    the pupil's own account: the guardian's session, a live invitation's token, the pupil's
    session and the menu's first dish."""

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
        # the child's own account (D28-O) and the school's learning list, for the pupil's pages
        sid = conn.execute(
            "INSERT INTO users (email, password_hash, role, school_id, locale)"
            " VALUES (%s, 'x', 'student', 'b1', 'kk') RETURNING id", (f"{child}@b1.pupil",)
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO student_accounts (user_id, person_id) VALUES (%s, %s)",
                     (sid, child))  # fmt: skip
        conn.execute(
            "INSERT INTO learning_resources (school_id, position, title, url) VALUES"
            " ('b1', 0, 'Kundelik', 'https://kundelik.kz'), ('b1', 1, 'Bilimland',"
            " 'https://bilimland.kz')"
        )
        session, invite, pupil = (secrets.token_urlsafe(32) for _ in range(3))
        day = "now() + interval '1 day'"
        for token, user in ((session, gid), (pupil, sid)):
            conn.execute(f"INSERT INTO sessions (token_hash, user_id, expires_at)"
                         f" VALUES (%s, %s, {day})", (digest(token), user))  # fmt: skip
        conn.execute(f"INSERT INTO guardian_invitations (token_hash, guardian_id, expires_at)"
                     f" VALUES (%s, %s, {day})", (digest(invite), gid))  # fmt: skip
    return session, invite, pupil, dishes[0]


def _name(page: str) -> str:
    if page.startswith("/app/invite/"):
        return "/app/invite/…"
    if page.startswith("/app/kk/rate?"):
        return "/app/kk/rate?…"
    return page.removesuffix("#pupil")


def run(repeat: int = 3) -> list[Row]:
    with database(0) as url:
        session, invite, pupil, dish = _populate(url)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT (now() AT TIME ZONE 'Asia/Almaty')::date").fetchone()
        rate = f"/app/kk/rate?dish={dish}&day={row[0] if row else ''}"
        # every page of the app (issue #16): signed out, the guardian's, the pupil's ("#pupil"
        # only keeps the two sessions' feeds apart; the fragment never reaches the server)
        pages = {"/app/kk/login": None, f"/app/invite/{invite}?lang=kk": None,
                 "/app/kk/forgot": None, "/app/kk/code": None,
                 "/app/kk/": session, "/app/kk/menu": session,
                 "/app/kk/restrictions": session, rate: session,
                 "/app/kk/money": session, "/app/kk/stats": session,
                 "/app/kk/settings": session, "/app/kk/platforms": session,
                 "/app/kk/offline": session,
                 "/app/kk/#pupil": pupil, "/app/kk/learning": pupil}  # fmt: skip
        return score_pages(url, pages, repeat, _name)
