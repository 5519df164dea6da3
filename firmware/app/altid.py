# Alternative identification on the board, offline (docs/altid.md, docs/decisions.md D29-J):
# a dynamic QR code read by a serial scanner (hal.qrscan) and a pupil number + PIN typed on a
# Wiegand keypad (hal.keypad). Both end in Door.decide with the person key and the method, so
# schedules, anti-passback, the relay and the journal are the card's; the event carries `method`.
# A method works for a person only while the whitelist's person record has its flag, which the
# cloud sets only while a guardian's consent for it is recorded and not withdrawn.
# Whitelist record attributes (protocol.md "Whitelist file"), bits 4-7 (reserved before D29-J,
# so old boards ignore them and cards keep working there):
#   0x10 QR allowed, 0x20 PIN allowed, 0x40 the record is a person's, 0x80 the record is a PIN key.
# State in module globals, preallocated at the first use (64 KiB boards, D16): the replay cache
# of QR codes accepted (person key + step) and the PIN failures per person.
from compat import emit
from store.altkey import STEP_S, person_key, pin_key, qr_key, qr_tag, same

F_QR = 0x10
F_PIN = 0x20
F_PERSON = 0x40
F_PINREC = 0x80
SKEW_S = 5  # a code is taken this much before its step starts (clocks a little apart)
REPLAY_N = 16  # QR codes remembered (12 bytes each): 16 codes within a minute at one board
LOCK_N = 16  # people with PIN failures remembered (16 bytes each)
MAX_TRIES = 5  # wrong PINs in a row that lock a person's PIN out
LOCK_S = 900  # for this long; failures older than this are forgotten

_seen = None  # REPLAY_N x (person key 8, step u32 LE); step 0: free
_fails = None  # LOCK_N x (person key 8, fails u8, pad 3, u32 LE: last failure / locked until)


def _u32(b, i):
    return b[i] | b[i + 1] << 8 | b[i + 2] << 16 | b[i + 3] << 24


def _put32(b, i, v):
    for j in range(4):
        b[i + j] = (v >> (8 * j)) & 0xFF


def _eq(b, i, key):
    for j in range(8):
        if b[i + j] != key[j]:
            return False
    return True


def reset():
    """Forget the replay cache and the PIN failures (a reboot does the same; tests)."""
    global _seen, _fails
    import gc
    _seen = _fails = None
    gc.collect()  # the first use comes after taps have cut the heap up: room in one piece
    _seen = bytearray(REPLAY_N * 12)
    _fails = bytearray(LOCK_N * 16)


def setup(a):
    """At boot (app.runner, device.json "altid": true): the tables, and on the simulated board
    its scanner and keypad (hal.simalt)."""
    reset()
    if a.board.name == "sim":
        import hal.simalt
        hal.simalt.setup()


def parse_qr(line):
    """b"Q1.<number>.<step>.<16 hex digits>" -> (number, step, tag) or None."""
    from binascii import unhexlify
    p = bytes(line).split(b".")
    if len(p) != 4 or p[0] != b"Q1" or len(p[3]) != 16:
        return None
    if not 1 <= len(p[1]) <= 12 or not p[1].isdigit() or not 1 <= len(p[2]) <= 10 \
            or not p[2].isdigit():
        return None
    try:
        return p[1], int(p[2]), unhexlify(p[3])
    except ValueError:
        return None


def _person(door, pk, flag):
    # None if the whitelist lists pk as a person with the method's flag, else the reason.
    wl = door.wl
    if wl is None:
        return door.wl_reason
    if not wl.lookup(pk) or not wl.attrs() & F_PERSON:
        return "unknown_card"
    if not wl.attrs() & flag:
        return "no_consent"
    return None


def qr(door, line, reader=None):
    """A line from the QR scanner. -> "granted"/"denied", or None if it is not one of ours."""
    got = parse_qr(line)
    if got is None:
        emit("ignored", {"why": "not_a_code"})
        return None
    if _seen is None:
        reset()
    pk = person_key(door.site_key, got[0])
    why = _person(door, pk, F_QR) or _check_qr(door, pk, got[1], got[2])
    reader = reader or door.reader
    return _to(door, reader)(pk, reader, "qr", why)


def _to(door, reader):
    # The counter's decision on a canteen reader (app.canteen, set by app.runner), else the door's.
    c = getattr(door, "counter", None)
    return c.by_key if c is not None and reader == "canteen" else door.decide


def _check_qr(door, pk, step, tag):
    clk = door.clock
    if not clk.synced:
        return "clock_unsynced"  # the step cannot be judged; the card still works
    t = clk.now()
    t0 = step * STEP_S
    if t < t0 - SKEW_S or t >= t0 + 2 * STEP_S:
        return "expired"
    # The tag before the replay cache: a forged code must not take a slot in it.
    if not same(qr_tag(qr_key(door.site_key, pk), pk, step), tag):
        return "bad_code"
    s = _seen
    old = t // STEP_S - 2  # entries of this step or older are past their validity
    free = -1
    for i in range(0, len(s), 12):
        st = _u32(s, i + 8)
        if st == step and _eq(s, i, pk):
            return "replayed"
        if free < 0 and st <= old:
            free = i
    if free < 0:
        return "replay_full"  # more codes within a minute than remembered: refuse, not forget
    s[free:free + 8] = pk
    _put32(s, free + 8, step)
    return None


def pin(door, number, pin_digits, reader=None):
    """A pupil number and PIN from the keypad (hal.keypad.PinPad). -> "granted"/"denied"."""
    if _seen is None:
        reset()
    pk = person_key(door.site_key, number)
    why = _person(door, pk, F_PIN) or _check_pin(door, pk, pin_digits)
    reader = reader or door.reader
    return _to(door, reader)(pk, reader, "pin", why)


def _check_pin(door, pk, pin_digits):
    f = _fails
    now = door.clock.up_ms() // 1000
    at = -1
    free = -1
    for i in range(0, len(f), 16):
        if f[i + 8] and _eq(f, i, pk):
            at = i
            break
        if free < 0 and (not f[i + 8] or _stale(f, i, now)):
            free = i
    if at >= 0 and f[at + 8] >= MAX_TRIES and not _stale(f, at, now):
        return "locked_out"
    wl = door.wl
    if wl.lookup(pin_key(door.site_key, pk, pin_digits)) and wl.attrs() & F_PINREC:
        if at >= 0:
            f[at + 8] = 0
        return None
    if at < 0:
        if free < 0:
            return "locked_out"  # every slot holds a recent failure: refuse rather than forget
        at = free
        f[at:at + 8] = pk
        f[at + 8] = 0
    n = f[at + 8]
    if _stale(f, at, now):
        n = 0
    n += 1
    f[at + 8] = n
    _put32(f, at + 12, now + LOCK_S if n >= MAX_TRIES else now)
    return "wrong_pin"


def _stale(f, i, now):
    # The slot's failures no longer count: the lock ran out, or the last failure is old.
    t = _u32(f, i + 12)
    return now >= t if f[i + 8] >= MAX_TRIES else now - t >= LOCK_S
