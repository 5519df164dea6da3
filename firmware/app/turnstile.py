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
# One preallocated slot per direction and one long-lived task for both the patterns and the
# passage watch (a task and its frame cost heap for good); per tap only the short-lived
# coroutines of the pattern's waits (_wait), as Buzzer.play's were.
# Module functions, not classes or closures: a class costs ~200 bytes of heap more than the
# functions it holds (64 KiB boards, docs/decisions.md D16).
from compat import asyncio, emit, hexlify, sleep_ms, ticks_add, ticks_diff, ticks_ms
from store.jcodec import READERS

POLL_MS = 20  # a person breaks a beam for 300 ms or more
GRANT = 1  # one name a line: `A, B, C = 1, 2, 3` is a tuple object in the heap (D16)
DENY = 2
ERROR = 3


# The state of the board's one door, in module globals rather than in closures: a closure
# costs its function object plus a 32-byte cell per captured name (64 KiB boards, D16).
_pas = None  # (slots, passage_timeout_ms, door)
_sig = None  # [pattern to show (0: none), the task's Event]


def setup(door, cfg, link=None, rules=None):
    """Inside the event loop (starts the task). `rules`: an app.rules.Rules, or None."""
    global _pas, _sig
    if rules is not None:
        door.rules = rules
        if link is not None:
            door.online = lambda: link.up
    _sig = [0, asyncio.Event()]
    b = door.board
    # [reader, pin, active level, deadline, seq, key (None: nothing pending)]
    slots = []
    if hasattr(b, "passage"):
        for r in READERS[:2]:  # "in", "out" (no tuple of constants of our own: heap, D16)
            x = b.passage(r)
            if x is not None:
                slots.append([r, x[0], 1 if x[1] else 0, 0, 0, None])
    if slots:
        _pas = (slots, cfg.get("passage_timeout_ms", 5000), door)
        door.passage = _expect
    door.signal = _signal
    asyncio.create_task(_run(door, slots, _sig))


def _expect(reader, seq, key):
    # Door.passage: wait for a passage on `reader` for the grant `seq`; False if it has no sensor.
    slots, timeout_ms, door = _pas
    for s in slots:
        if s[0] == reader:
            if s[5] is not None:  # granted again before the previous one walked through
                _miss(door, s)
            s[3] = ticks_add(ticks_ms(), timeout_ms)
            s[4] = seq
            s[5] = key
            _sig[1].set()
            return True
    return False


def _signal(granted, reason):
    # Door.signal. tap() has switched the LED already: the decision shows without waiting for
    # the task.
    # no_whitelist, bad_whitelist, error (no tuple of them: constants in the heap, D16)
    _sig[0] = GRANT if granted else (ERROR if reason == "error" or reason.endswith("whitelist")
                                     else DENY)
    _sig[1].set()


async def _run(door, slots, sig):
    # The patterns, played while the passages are watched (_wait), and the passage watch alone.
    b = door.board
    led = b.led
    bz = getattr(b, "buzzer", None)
    ev = sig[1]
    while True:
        pat = sig[0]
        if pat:
            sig[0] = 0
            if bz:  # as Buzzer.play: (on_ms, off_ms, on_ms, ...), silent whatever happens
                tones = bz.OK if pat == GRANT else (bz.DENY if pat == DENY else bz.ALARM)
                bz.playing = True
                try:
                    for i in range(len(tones)):
                        if i & 1:
                            bz.off()
                        else:
                            bz.on()
                        await _wait(door, slots, tones[i])
                finally:
                    bz.off()
                    bz.playing = False
            if pat == GRANT:
                await _wait(door, slots, max(door.relay_ms - 80, 0))
            elif pat == DENY:
                await _wait(door, slots, 600)
            else:
                for _ in range(3):
                    led.off()
                    await _wait(door, slots, 150)
                    led.deny()
                    await _wait(door, slots, 150)
            if not sig[0]:
                led.off()
        elif await _wait(door, slots, 0):
            await sleep_ms(POLL_MS)
        else:
            ev.clear()
            await ev.wait()


def _miss(door, s):
    """A grant on reader s[0] (event seq s[4]) nobody walked through in time: a "not_passed"
    event, journaled as a compact record (store.jcodec: the tap's fields and `ref`)."""
    key, s[5] = s[5], None
    reader, ref = s[0], s[4]
    door.seq += 1
    clk = door.clock
    door.append(door.journal.append_tap, (door.boot, door.seq, clk.now(), clk.synced,
                                          clk.up_ms(), reader, key, "granted", None, ref))
    emit("not_passed", {"boot": door.boot, "seq": door.seq, "reader": reader,
                        "card": hexlify(key), "ref": ref})
    if door.on_event:
        door.on_event()


async def _wait(door, slots, ms):
    # Wait `ms` while watching the passages every POLL_MS. -> a passage is still awaited.
    end = ticks_add(ticks_ms(), ms)
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
        d = ticks_diff(end, ticks_ms())
        if d <= 0:
            return busy
        await sleep_ms(d if d < POLL_MS else POLL_MS)
