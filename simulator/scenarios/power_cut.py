"""power_cut: while pupils tap, boards lose power at random moments (SIGKILL of the VM between
two reads, `VirtualBoard.power_cut()`) and come back; nothing may be lost or duplicated."""

from __future__ import annotations

from simulator.board import VirtualBoard
from simulator.scenarios.base import Context, Harness, Summary, arrivals, run_harness
from simulator.school import Reader

DEFAULTS = {"students": 300, "staff": 0, "boards": 3, "minutes": 15, "speed": 60, "cuts": 6}


def run(ctx: Context) -> Summary:
    ctx = ctx.with_defaults(DEFAULTS)
    readers = [Reader(f"door-{i + 1}", "Entrance", "door", "in") for i in range(ctx.boards or 1)]
    h = Harness(ctx, "power_cut", readers)
    window = float(ctx.minutes or 1) * 60
    cuts: list[str] = []

    def cycle(board: VirtualBoard) -> None:
        board.power_cut()
        cuts.append(board.config.device)
        board.start(wait=60)

    def body(h: Harness) -> None:
        n = len(h.boards)
        times = arrivals(h.rng, len(h.school.people), window, peak=0.5)
        people = list(h.school.people)
        h.rng.shuffle(people)
        schedule: list = [
            (t, i % n, p.uid) for i, (t, p) in enumerate(zip(times, people, strict=True))
        ]
        for _ in range(int(ctx.options["cuts"])):
            schedule.append((h.rng.uniform(0.05, 0.95) * window, h.rng.randrange(n), cycle))
        ctx.say(f"power cuts: {len(times)} taps, {ctx.options['cuts']} power cuts")
        h.play(schedule)

    s = run_harness(h, body)
    s.sim_seconds = window
    boots = {b.config.device: sorted({t["boot"] for t in b.taps}) for b in h.boards}
    s.figures["power cuts"] = f"{len(cuts)} ({', '.join(sorted(set(cuts)))})"
    s.figures["boots seen"] = ", ".join(
        f"{d[len(h.school.school) + 1 :]} {v}" for d, v in boots.items()
    )
    if len(cuts) != int(ctx.options["cuts"]):
        s.violations.append(f"{len(cuts)} of {ctx.options['cuts']} power cuts happened")
    return s
