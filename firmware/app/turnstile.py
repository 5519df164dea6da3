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
# Module functions, not classes or closures: a class costs ~200 bytes of heap more than the
# functions it holds (64 KiB boards, docs/decisions.md D16).
from compat import asyncio, emit, hexlify, sleep_ms, ticks_add, ticks_diff, ticks_ms

POLL_MS = 20  # a person breaks a beam for 300 ms or more
GRANT, DENY, ERROR = 1, 2, 3


# The state of the board's one door, in module globals rather than in closures: a closure
# costs its function object plus a 32-byte cell per captured name (64 KiB boards, D16).
_pas = None  # (slots, passage Event, passage_timeout_ms, door)
_sig = None  # [pattern to show, its Event]


def setup(door, cfg, link=None, rules=None):
    """Inside the event loop (starts tasks). `rules`: an app.rules.Rules, or None."""
    global _pas, _sig
    if rules is not None:
        door.rules = rules
        if link is not None:
            door.online = lambda: link.up
    b = door.board
    found = [(r, b.passage(r)) for r in ("in", "out")] if hasattr(b, "passage") else ()
    found = [x for x in found if x[1] is not None]
    if found:
        # [reader, pin, active level, deadline, seq, key (None: nothing pending)]
        slots = [[r, s[0], 1 if s[1] else 0, 0, 0, None] for r, s in found]
        _pas = (slots, asyncio.Event(), cfg.get("passage_timeout_ms", 5000), door)
        door.passage = _expect
        asyncio.create_task(_passages(door, slots, _pas[1]))
    _sig = [0, asyncio.Event()]
    door.signal = _signal
    asyncio.create_task(_signals(door, _sig))


def _expect(reader, seq, key):
    # Door.passage: wait for a passage on `reader` for the grant `seq`; False if it has no sensor.
    slots, pev, timeout_ms, door = _pas
    for s in slots:
        if s[0] == reader:
            if s[5] is not None:  # granted again before the previous one walked through
                _miss(door, s)
            s[3] = ticks_add(ticks_ms(), timeout_ms)
            s[4] = seq
            s[5] = key
            pev.set()
            return True
    return False


def _signal(granted, reason):
    # Door.signal. tap() has switched the LED already: the decision shows without waiting for
    # the task.
    _sig[0] = GRANT if granted else (ERROR if reason in ("no_whitelist", "bad_whitelist",
                                                         "error") else DENY)
    _sig[1].set()


async def _signals(door, sig):
    b = door.board
    led = b.led
    bz = getattr(b, "buzzer", None)
    ev = sig[1]
    while True:
        await ev.wait()
        ev.clear()
        pat = sig[0]
        if pat == GRANT:
            if bz:
                await bz.play(bz.OK)
            await sleep_ms(max(door.relay_ms - 80, 0))
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
        if not ev.is_set():
            led.off()


def _miss(door, s):
    """A grant on reader s[0] (event seq s[4]) nobody walked through in time: a "not_passed"
    event."""
    key, s[5] = s[5], None
    reader, ref = s[0], s[4]
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


async def _passages(door, slots, ev):
    while True:
        busy = False
        for s in slots:
            if s[5] is None:
                continue
            if s[1].value() == s[2]:
                key, s[5] = s[5], None
                rules = door.rules
                if rules is not None:
                    rules.passed(key, s[0])
                emit("passage", {"reader": s[0], "ref": s[4]})
            elif ticks_diff(s[3], ticks_ms()) <= 0:
                _miss(door, s)
            else:
                busy = True
        if busy:
            await sleep_ms(POLL_MS)
        else:
            ev.clear()
            await ev.wait()
