"""whitelist_update_during_rush: in the middle of the morning rush a new list (v2: some cards
revoked, newcomers' cards added) is pushed to every board. Every decision must match the old or
the new list, and per board once a decision used the new list no later one uses the old one
(invariant 5: never a mix)."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from cloud.domain.cardkey import card_key
from cloud.domain.registry import add_card, add_person, compile_whitelist, revoke_card
from simulator.scenarios.base import (
    Context,
    Harness,
    Summary,
    arrivals,
    run_harness,
    whitelist_keys,
)
from simulator.school import Reader

DEFAULTS = {"students": 600, "staff": 0, "boards": 4, "minutes": 20, "speed": 60,
            "at": 0.5, "changed": 0.05, "repeat": 3}  # fmt: skip


def run(ctx: Context) -> Summary:
    ctx = ctx.with_defaults(DEFAULTS)
    readers = [Reader(f"turnstile-{i + 1}", "Main entrance", "turnstile", "in")
               for i in range(ctx.boards or 1)]  # fmt: skip
    h = Harness(ctx, "whitelist_update_during_rush", readers)
    window = float(ctx.minutes or 1) * 60
    people = list(h.school.people)
    n_changed = max(1, int(len(people) * float(ctx.options["changed"])))
    revoked = people[:n_changed]
    taken = {p.uid for p in people} | set(h.school.strangers)
    newcomers: list[bytes] = []
    while len(newcomers) < n_changed:
        uid = h.rng.randbytes(4)
        if uid not in taken:
            taken.add(uid)
            newcomers.append(uid)
    mark: dict[str, Any] = {}

    def update() -> None:
        mark["push"] = time.monotonic()
        with psycopg.connect(ctx.database_url) as conn:
            for p in revoked:
                revoke_card(conn, card_key(h.school.site_key, p.uid))
            for i, uid in enumerate(newcomers):
                pid = add_person(conn, h.school.school, "student", f"Newcomer {i}")
                add_card(conn, pid, card_key(h.school.site_key, uid))
            wl2 = compile_whitelist(conn, h.school.school, version=2)
            conn.commit()
        chunks = h.push_whitelist(wl2)
        late = h.wait_wl(2, h.boards, 30)
        mark["installed"] = time.monotonic()
        ctx.say(f"  pushed v2 ({chunks} chunks) during the rush; not installed: {sorted(late)}")

    def body(h: Harness) -> None:
        n = len(h.boards)
        uids = [p.uid for p in people]
        changed = [p.uid for p in revoked] + newcomers
        uids += changed * (int(ctx.options["repeat"]) - 1) + newcomers  # the changed cards, often
        h.rng.shuffle(uids)
        times = arrivals(h.rng, len(uids), window)
        # A card's repeated taps go to different turnstiles in turn (debounce is per board).
        schedule = [(t, i % n, uid) for i, (t, uid) in enumerate(zip(times, uids, strict=True))]
        ctx.say(
            f"whitelist update during the rush: {len(schedule)} taps, {n_changed} cards "
            f"revoked and {n_changed} added at {float(ctx.options['at']) * 100:.0f} %"
        )
        h.play(schedule, events=[(window * float(ctx.options["at"]), update)])
        mark["late"] = h.wait_wl(2, h.boards, 10)

    s = run_harness(h, body)
    s.sim_seconds = window
    if 2 not in h.whitelists:
        s.violations.append("the update was never pushed")
        return s
    old, new = whitelist_keys(h.whitelists[1]), whitelist_keys(h.whitelists[2])
    counts = {"old": 0, "new": 0, "either": 0}
    for board in h.boards:
        seen_new = False
        for tap in board.taps:
            key, granted = tap["card"], tap["result"] == "granted"
            fits_old, fits_new = granted == (key in old), granted == (key in new)
            if not fits_old and not fits_new:
                s.violations.append(f"{board.config.device}: decision fits neither list: {tap}")
            elif fits_old and fits_new:
                counts["either"] += 1
            elif fits_new:
                counts["new"] += 1
                seen_new = True
            else:
                counts["old"] += 1
                if seen_new:
                    s.violations.append(
                        f"{board.config.device}: old list used after the new one: {tap}"
                    )
    late = mark.get("late")
    if late:
        s.violations.append(f"boards not on v2 at the end: {sorted(late)}")
    if not counts["new"]:
        s.violations.append("no decision showed the new list (the update did not take effect)")
    s.figures["decisions"] = (f"{counts['old']} by the old list only, {counts['new']} by the new "
                              f"only, {counts['either']} by both")  # fmt: skip
    if "installed" in mark:
        took = mark["installed"] - mark["push"]
        s.figures["update"] = f"v2 on all boards {took:.2f} s (real) after the push started"
    return s
