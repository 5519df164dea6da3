# Turnstile / door features beyond "listed card opens", loaded by app.supervisor only when the
# configuration asks for them:
# - rules (app.rules): schedules per access profile, anti-passback (device.json `profiles`,
#   `antipassback`);
# - passage confirmation: after a grant wait up to `passage_timeout_ms` (5000) for the passage
#   sensor of that direction (board.json `passage_sensors`). A passage counts the card as
#   through (anti-passback state); none gives an extra "not_passed" event referencing the tap's
#   seq (docs/protocol.md "Event reasons");
# - LED/buzzer patterns: grant = green for the pulse + one beep; deny = red 1 s + two beeps;
#   error (no usable whitelist, journal failure) = red blinking + alarm.
# Nothing is allocated per tap: one preallocated slot per direction, two long-lived tasks.
from compat import asyncio, emit, hexlify, sleep_ms, ticks_add, ticks_diff, ticks_ms

POLL_MS = 20  # a person breaks a beam for 300 ms or more
GRANT, DENY, ERROR = 1, 2, 3


def setup(door, cfg, link=None, rules=None):
    """Inside the event loop (starts tasks). `rules`: an app.rules.Rules, or None."""
    if rules is not None:
        door.rules = rules
        if link is not None:
            door.online = lambda: link.up
    b = door.board
    found = [(r, b.passage(r)) for r in ("in", "out")] if hasattr(b, "passage") else ()
    found = [x for x in found if x[1] is not None]
    if found:
        door.passage = Passage(door, found, cfg.get("passage_timeout_ms", 5000))
    door.signal = Signal(door).set


class Signal:
    def __init__(self, door):
        self.door = door
        self.pat = 0
        self.ev = asyncio.Event()
        asyncio.create_task(self.run())

    def set(self, granted, reason):
        # tap() has switched the LED already: the decision shows without waiting for this task.
        self.pat = GRANT if granted else (ERROR if reason in ("no_whitelist", "bad_whitelist",
                                                              "error") else DENY)
        self.ev.set()

    async def run(self):
        b = self.door.board
        led = b.led
        bz = getattr(b, "buzzer", None)
        while True:
            await self.ev.wait()
            self.ev.clear()
            pat = self.pat
            if pat == GRANT:
                if bz:
                    await bz.play(bz.OK)
                await sleep_ms(max(self.door.relay_ms - 80, 0))
            elif pat == DENY:
                if bz:
                    await bz.play(bz.DENY)
                await sleep_ms(600)
            else:
                if bz:
                    await bz.play(bz.ALARM)
                for _ in range(3):
                    led.off()
                    await sleep_ms(150)
                    led.deny()
                    await sleep_ms(150)
            if not self.ev.is_set():
                led.off()


def not_passed(door, reader, ref, key):
    """A grant on `reader` (event seq `ref`) nobody walked through in time."""
    door.seq += 1
    clk = door.clock
    t, up, sync = clk.now(), clk.up_ms(), 1 if clk.synced else 0
    card = hexlify(key)
    data = ('{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"not_passed","reader":"%s",'  # noqa: UP031
            '"card":"%s","result":"granted","reason":"passage_timeout","ref":%d}'
            % (door.boot, door.seq, t, sync, up, reader, card, ref))
    door.append(door.journal.append,
                (door.boot, door.seq, data, t, sync, up, ("in", "out").index(reader)))
    emit("not_passed", {"boot": door.boot, "seq": door.seq, "reader": reader, "card": card,
                        "ref": ref})
    if door.on_event:
        door.on_event()


class Passage:
    def __init__(self, door, sensors, timeout_ms=5000):
        """sensors: [(reader, (pin, active_high)), ...]"""
        self.door = door
        self.timeout_ms = timeout_ms
        self.misses = 0
        # [reader, pin, active level, deadline, seq, key (None: nothing pending)]
        self.slots = [[r, s[0], 1 if s[1] else 0, 0, 0, None] for r, s in sensors]
        self.ev = asyncio.Event()
        asyncio.create_task(self.run())

    def expect(self, reader, seq, key):
        """Wait for a passage on `reader` for the grant `seq`; False if it has no sensor."""
        for s in self.slots:
            if s[0] == reader:
                if s[5] is not None:  # granted again before the previous one walked through
                    self._miss(s)
                s[3] = ticks_add(ticks_ms(), self.timeout_ms)
                s[4] = seq
                s[5] = key
                self.ev.set()
                return True
        return False

    def _miss(self, s):
        key, s[5] = s[5], None
        self.misses += 1
        not_passed(self.door, s[0], s[4], key)

    async def run(self):
        while True:
            busy = False
            for s in self.slots:
                if s[5] is None:
                    continue
                if s[1].value() == s[2]:
                    key, s[5] = s[5], None
                    rules = self.door.rules
                    if rules is not None:
                        rules.passed(key, s[0])
                    emit("passage", {"reader": s[0], "ref": s[4]})
                elif ticks_diff(s[3], ticks_ms()) <= 0:
                    self._miss(s)
                else:
                    busy = True
            if busy:
                await sleep_ms(POLL_MS)
            else:
                self.ev.clear()
                await self.ev.wait()
