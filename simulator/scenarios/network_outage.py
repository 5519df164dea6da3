"""network_outage: every board reaches the broker through its own NetProxy. Part-way through the
morning the link of some boards is cut (connections reset, new ones refused) for `outage`
simulated minutes while pupils keep tapping; one other board runs on a slow link (delay +
throttle) meanwhile. Then everything is restored and every event must arrive exactly once."""

from __future__ import annotations

import time

from simulator.scenarios.base import Context, Harness, Summary, arrivals, run_harness
from simulator.school import Reader

DEFAULTS = {"students": 400, "staff": 0, "boards": 4, "minutes": 20, "speed": 60,
            "outage": 5.0, "cut_boards": 0, "start": 0.3}  # fmt: skip


def run(ctx: Context) -> Summary:
    ctx = ctx.with_defaults(DEFAULTS)
    readers = [
        Reader(f"gate-{i + 1}", "Entrance", "turnstile", "in") for i in range(ctx.boards or 1)
    ]
    h = Harness(ctx, "network_outage", readers, proxied=True)
    window = float(ctx.minutes or 1) * 60
    outage = float(ctx.options["outage"]) * 60
    cut_n = int(ctx.options["cut_boards"]) or max(1, len(readers) // 2)
    held: dict[str, int] = {}
    marks: dict[str, float] = {}

    def body(h: Harness) -> None:
        cut = h.boards[:cut_n]
        slow = h.boards[cut_n] if len(h.boards) > cut_n else None
        t_cut = window * float(ctx.options["start"])
        t_back = min(window, t_cut + outage)

        def go_down() -> None:
            marks["cut"] = time.monotonic()
            for b in cut:
                h.proxies[b.config.device].cut()
            if slow is not None:
                h.proxies[slow.config.device].slow(delay=0.05, rate=20_000)
            ctx.say(
                f"  cut {[b.config.device for b in cut]}"
                + (f", slowed {slow.config.device}" if slow else "")
            )

        def come_back() -> None:
            for b in cut:
                held[b.config.device] = b.journal_depth or 0
            for p in h.proxies.values():
                p.restore()
            marks["back"] = time.monotonic()
            ctx.say(f"  restored; held in journals: {held}")

        times = arrivals(h.rng, len(h.school.people), window, peak=0.5)
        people = list(h.school.people)
        h.rng.shuffle(people)
        n = len(h.boards)
        schedule = [(t, i % n, p.uid) for i, (t, p) in enumerate(zip(times, people, strict=True))]
        ctx.say(
            f"network outage: {len(schedule)} taps, {cut_n} boards offline from "
            f"{t_cut / 60:.1f} to {t_back / 60:.1f} simulated min"
        )
        h.play(schedule, events=[(t_cut, go_down), (t_back, come_back)])

    s = run_harness(h, body)
    s.sim_seconds = window
    s.figures["offline boards"] = f"{cut_n} for {outage / 60:g} simulated min"
    s.figures["held offline"] = f"{sum(held.values())} events in journals at restore ({held})"
    stats = {d[len(h.school.school) + 1:]: (p.stats.cuts, p.stats.refused, p.stats.connections)
             for d, p in h.proxies.items()}  # fmt: skip
    s.figures["proxies"] = "cuts/refused/connections " + ", ".join(
        f"{d} {c}/{r}/{n}" for d, (c, r, n) in stats.items()
    )
    if not marks.get("back"):
        s.violations.append("the outage never ended")
    elif not sum(held.values()) and any(
        r.at > marks["cut"] and r.at < marks["back"] and r.board in held for r in h.records
    ):
        s.violations.append("boards tapped during the outage but their journals held nothing")
    return s
