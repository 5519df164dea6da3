# Supervisor: feeds the hardware watchdog only while every watched task is alive (each one ticks a
# heartbeat, sup.beat(name), on every turn of its loop; the first beat starts watching it), and
# puts the board into safe mode after `safe_after` (3) consecutive failed boots: a counter in
# `bootfail.cnt`, incremented at every start, cleared after `healthy_s` of healthy running. In
# safe mode no reader task runs (network and commands only) and the status says "safe_mode": true.
# device.json: "supervisor": {"wdt_ms": 8000, "stale_ms": 5000, "safe_after": 3, "healthy_s": 60}
from compat import asyncio, emit, sleep_ms, ticks_diff, ticks_ms, write_atomic

FAILS = "bootfail.cnt"


class Supervisor:
    def __init__(self, cfg):
        c = cfg.get("supervisor") or {}
        self.c = c
        try:
            with open(FAILS) as f:
                n = int(f.read())
        except (OSError, ValueError):
            n = 0
        self.fails = n
        self.safe = n >= c.get("safe_after", 3)
        write_atomic(FAILS, b"%d\n" % (n + 1))
        self.beats = {}  # task name -> ticks_ms of its last heartbeat
        self.reinits = 0  # reader re-initialisations since boot
        self.stale = None  # the task that stopped beating, if any

    def beat(self, name):
        self.beats[name] = ticks_ms()

    def reinit(self, name):
        self.reinits += 1
        emit("reinit", {"reader": name, "n": self.reinits})

    def info(self):
        return {"safe_mode": self.safe, "fails": self.fails, "reinits": self.reinits,
                "stale": self.stale}

    async def run(self, app):
        board = app.board
        c = self.c
        ms = c.get("wdt_ms", 8000)
        wdt = board.watchdog(ms) if ms and hasattr(board, "watchdog") else None
        stale_ms = c.get("stale_ms", 5000)
        healthy_ms = c.get("healthy_s", 60) * 1000
        t0 = ticks_ms()
        while True:
            now = ticks_ms()
            bad = None
            for n in self.beats:
                if ticks_diff(now, self.beats[n]) > stale_ms:
                    bad = n
            if bad is None:
                if wdt:
                    wdt.feed()
                if t0 is not None and ticks_diff(now, t0) >= healthy_ms:
                    write_atomic(FAILS, b"0\n")
                    t0 = None
                    emit("healthy", {})
            elif t0 is not None:
                t0 = now  # healthy running has to start over
            if bad and bad != self.stale:
                print("#", "supervisor", "task", bad, "stopped")  # the watchdog is not fed
                app.sync.error("task", bad)  # on flash (err.log) before the watchdog resets
            self.stale = bad
            await sleep_ms(1000)


def start_supervisor(App, board, cfg, boot, journal):
    """main.py: builds the app and runs it under the supervisor. The optional door features
    (app.turnstile, app.rules and the anti-passback table) are loaded before the App is built,
    while the heap is still in one piece."""
    sup = Supervisor(cfg)
    rules = feats = None
    if sup.safe:
        emit("safe_mode", {"fails": sup.fails})
    elif (cfg.get("profiles") or cfg.get("antipassback") or getattr(board, "buzzer", None)
          or getattr(board, "passage_sensors", None)):
        import app.turnstile as feats
        if cfg.get("profiles") or cfg.get("antipassback"):
            from app.rules import Rules
            rules = Rules(cfg)
            cfg.pop("profiles", None)  # parsed into rules; the dicts from device.json can go
    app = App(board, cfg, boot, journal)
    app.sup = sup
    app.safe_mode = sup.safe
    if sup.safe:
        app.sync.status["safe_mode"] = True
    asyncio.run(_run(app, sup, feats, rules))


async def _run(app, sup, feats, rules):
    if feats is not None:
        feats.setup(app.door, app.cfg, app.link, rules)
    asyncio.create_task(sup.run(app))
    await app.run()
