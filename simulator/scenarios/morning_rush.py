"""morning_rush: every pupil passes one of the entrance turnstiles within the morning window
(default 1,000 pupils, 4 turnstiles, 20 simulated minutes, peaking at 70 % of the window)."""

from __future__ import annotations

from simulator.scenarios.base import Context, Harness, Summary, arrivals, run_harness
from simulator.school import Reader

DEFAULTS = {"students": 1000, "staff": 0, "boards": 4, "minutes": 20, "speed": 60,
            "strangers": 0.01}  # fmt: skip


def run(ctx: Context) -> Summary:
    ctx = ctx.with_defaults(DEFAULTS)
    readers = [Reader(f"turnstile-{i + 1}", "Main entrance", "turnstile", "in")
               for i in range(ctx.boards or 1)]  # fmt: skip
    h = Harness(ctx, "morning_rush", readers)
    window = float(ctx.minutes or 1) * 60

    def body(h: Harness) -> None:
        people = list(h.school.people)
        h.rng.shuffle(people)
        uids = [p.uid for p in people]
        uids += [
            h.rng.choice(h.school.strangers)
            for _ in range(int(len(uids) * ctx.options["strangers"]))
        ]
        times = arrivals(h.rng, len(uids), window)
        n = len(h.boards)
        # Each pupil picks a turnstile; a queue never shows the same card twice in a row.
        schedule = [(t, i % n, uid) for i, (t, uid) in enumerate(zip(times, uids, strict=True))]
        ctx.say(
            f"morning rush: {len(schedule)} taps over {window / 60:g} simulated min "
            f"at x{h.speed:g} (~{window / h.speed:.0f} s real)"
        )
        h.play(schedule)

    s = run_harness(h, body)
    s.sim_seconds = window
    known = {p.uid for p in h.school.people}
    wrong = [
        r for r in h.records if r.result and (r.result["result"] == "granted") != (r.uid in known)
    ]
    if wrong:
        s.violations.append(f"{len(wrong)} decisions contradict the whitelist, e.g. {wrong[0]}")
    rate = s.taps / s.tap_seconds if s.tap_seconds else 0.0
    s.figures["throughput"] = (f"{s.taps / (window / 60):.0f} taps per simulated min over "
                               f"{len(h.boards)} turnstiles = {rate:.1f} taps/s real")  # fmt: skip
    return s
