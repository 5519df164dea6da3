"""canteen_lunch: pupils tap canteen readers over the lunch break; some come back for a second
serving at another reader. Meal categories are set on the roster so the whitelist carries them;
the summary counts meals by category as the cloud sees them."""

from __future__ import annotations

import psycopg

from simulator.scenarios.base import Context, Harness, Summary, arrivals, run_harness
from simulator.school import Reader

DEFAULTS = {"students": 300, "staff": 10, "boards": 2, "minutes": 30, "speed": 60,
            "eat": 0.9, "seconds": 0.1}  # fmt: skip


def run(ctx: Context) -> Summary:
    ctx = ctx.with_defaults(DEFAULTS)
    readers = [Reader(f"canteen-{i + 1}", "Canteen", "canteen", "canteen")
               for i in range(ctx.boards or 1)]  # fmt: skip
    h = Harness(ctx, "canteen_lunch", readers)
    window = float(ctx.minutes or 1) * 60

    def prepare(conn: psycopg.Connection) -> None:
        # 0 none, 1 free, 2 reduced, 3 paid: spread over the pupils
        conn.execute(
            "UPDATE people SET meal_category = CASE WHEN kind = 'student' THEN 1 + id %% 3"
            " ELSE 0 END WHERE school_id = %s",
            (h.school.school,),
        )

    def body(h: Harness) -> None:
        n = len(h.boards)
        eaters = [p for p in h.school.people if h.rng.random() < ctx.options["eat"]]
        times = arrivals(h.rng, len(eaters), window * 0.8, peak=0.3)
        schedule = []
        for i, (t, p) in enumerate(zip(times, eaters, strict=True)):
            board = i % n
            schedule.append((t, board, p.uid))
            if h.rng.random() < ctx.options["seconds"]:
                # a second serving at least 3 simulated minutes later, at the next reader
                later = min(window - 1, t + 180 + h.rng.random() * 300)
                schedule.append((later, (board + 1) % n, p.uid))
        ctx.say(f"canteen lunch: {len(schedule)} meal taps over {window / 60:g} simulated min")
        h.play(schedule)

    s = run_harness(h, body, prepare)
    s.sim_seconds = window
    with psycopg.connect(ctx.database_url) as conn:
        rows = conn.execute(
            "SELECT coalesce(p.meal_category, -1), count(*) FROM events e"
            " LEFT JOIN people p ON p.id = e.person_id"
            " WHERE e.school_id = %s AND e.result = 'granted' GROUP BY 1 ORDER BY 1",
            (h.school.school,),
        ).fetchall()
        readers_seen = conn.execute(
            "SELECT DISTINCT reader FROM events WHERE school_id = %s", (h.school.school,)
        ).fetchall()
    names = {-1: "unresolved", 0: "none", 1: "free", 2: "reduced", 3: "paid"}
    meals = {names.get(int(c), str(c)): int(k) for c, k in rows}
    s.figures["meals"] = ", ".join(f"{k} {v}" for k, v in meals.items()) or "none"
    if not s.granted:  # the checks below would hold vacuously
        s.violations.append("no meal granted: the canteen served nobody")
    if sum(meals.values()) != s.granted:
        s.violations.append(f"{sum(meals.values())} meals in the cloud, {s.granted} granted taps")
    if meals.get("unresolved"):
        s.violations.append(f"{meals['unresolved']} granted meals without a person")
    if {r[0] for r in readers_seen} - {"canteen"}:
        s.violations.append(f"canteen events from readers {readers_seen}")
    return s
