"""lost_card_revoked: mid-morning a pupil reports a card lost; the card is revoked in the database,
whitelist v2 is compiled and pushed to every board over MQTT (a delta in chunks on
`{prefix}/v1/dev/{device}/wl`, protocol.md "Whitelist updates"). Taps of that card before the push
are granted; every tap after a board reports `wl: 2` is denied (`unknown_card`)."""

from __future__ import annotations

import time

import psycopg

from cloud.domain.cardkey import card_key
from cloud.domain.registry import compile_whitelist, revoke_card
from simulator.scenarios.base import Context, Harness, Summary, arrivals, run_harness
from simulator.school import Reader

DEFAULTS = {"students": 200, "staff": 0, "boards": 2, "minutes": 20, "speed": 60,
            "at": 0.4, "lost_taps": 10}  # fmt: skip


def run(ctx: Context) -> Summary:
    ctx = ctx.with_defaults(DEFAULTS)
    readers = [
        Reader(f"gate-{i + 1}", "Entrance", "turnstile", "in") for i in range(ctx.boards or 1)
    ]
    h = Harness(ctx, "lost_card_revoked", readers)
    window = float(ctx.minutes or 1) * 60
    lost = h.school.people[0]
    mark: dict[str, float] = {}
    installed: dict[str, float] = {}

    def revoke() -> None:
        mark["push"] = time.monotonic()
        with psycopg.connect(ctx.database_url) as conn:
            revoke_card(conn, card_key(h.school.site_key, lost.uid))
            wl2 = compile_whitelist(conn, h.school.school, version=2)
            conn.commit()
        chunks = h.push_whitelist(wl2)
        pending = {b.config.device for b in h.boards}
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for d in list(pending):
                if (h.status.get(d) or {}).get("wl") == 2:
                    installed[d] = time.monotonic()
                    pending.discard(d)
            time.sleep(0.02)
        ctx.say(
            f"  revoked {lost.name}'s card, pushed v2 ({chunks} chunks); "
            f"installed on {len(installed)}/{len(h.boards)} boards"
        )

    def body(h: Harness) -> None:
        n = len(h.boards)
        others = list(h.school.people[1:])
        times = arrivals(h.rng, len(others), window)
        schedule: list = [
            (t, i % n, p.uid) for i, (t, p) in enumerate(zip(times, others, strict=True))
        ]
        k = int(ctx.options["lost_taps"])
        for j in range(k):  # the lost card is tried all morning, alternating readers
            schedule.append(((j + 0.5) * window / k, j % n, lost.uid))
        h.play(schedule, events=[(window * float(ctx.options["at"]), revoke)])

    s = run_harness(h, body)
    s.sim_seconds = window
    before = after = 0
    for r in h.records:
        if r.uid != lost.uid or r.result is None:
            continue
        if r.at < mark.get("push", float("inf")):
            before += 1
            if r.result["result"] != "granted":
                s.violations.append(f"lost card denied before the revocation: {r.result}")
        elif r.board in installed and r.at > installed[r.board]:
            after += 1
            if r.result["result"] != "denied" or r.result["reason"] != "unknown_card":
                s.violations.append(f"revoked card let in on {r.board} after wl 2: {r.result}")
        elif r.uid == lost.uid and r.result["result"] == "granted":
            pass  # in flight while the update was being installed: either list is right
    others = [
        r for r in h.records if r.uid != lost.uid and r.result and r.result["result"] != "granted"
    ]
    if others:
        s.violations.append(f"{len(others)} other pupils denied, e.g. {others[0].result}")
    if len(installed) != len(h.boards):
        s.violations.append(f"wl 2 installed on {sorted(installed)} only")
    if not after:
        s.violations.append("the revoked card was never tapped after the update")
    if "push" in mark and installed:
        lat = max(installed.values()) - mark["push"]
        s.figures["update"] = f"v2 on all boards {lat:.2f} s (real) after the revocation"
    s.figures["lost card"] = f"{before} taps granted before, {after} denied after the update"
    return s
