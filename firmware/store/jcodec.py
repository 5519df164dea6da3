# Journal records <-> event JSON (docs/protocol.md "Journal"). The JSON is a pure function of the
# stored bytes, so every transmission of an event is byte-identical.
import struct
from binascii import crc32, hexlify

T_TAP = 0x54  # "T": a tap, 31 bytes
T_RAW = 0x4A  # "J": an event as JSON
T_DROP = 0x44  # "D": a "dropped" event, 46 bytes
STRIPPED = 0x8000  # raw len flag: the '{"boot":B,"seq":S,' prefix was stripped (rebuilt on read)
READERS = ("in", "out", "canteen")
REASONS = ("ok", "unknown_card", "no_whitelist", "bad_whitelist")
MAGIC = b"QJ1\n"  # segment header
RAW_MAX = 512  # longest JSON event stored as such
TAP_SIZE = 31
DROP_SIZE = 46  # also the reserve kept free at the end of every segment

_READERS = (b"in", b"out", b"canteen")
_REASONS = (b"ok", b"unknown_card", b"no_whitelist", b"bad_whitelist")
# Whole literals (not built by concatenation at import): a board runs them in place from flash.
_TAP = (b'{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"tap","reader":"%s","card":"%s",'
        b'"result":"%s","reason":"%s"}')
_DROP = (b'{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"dropped","reader":"%s",'
         b'"card":"0000000000000000","result":"denied","reason":"journal_full","dropped":%d,'
         b'"from":[%d,%d],"to":[%d,%d]}')


def tap_json(boot, seq, t, synced, up, reader, card, result, reason):
    # The same JSON as render() gives for a compact tap; for values the compact form cannot hold.
    return _TAP % (boot, seq, t, 1 if synced else 0, up, reader.encode(), hexlify(card),
                   result.encode(), reason.encode())


def pack_tap(w, boot, seq, t, synced, up, reader, card, result, reason):
    # Encode a tap record into w. -> the reader code, or -1 if a value does not fit.
    try:
        r = READERS.index(reader)
        c = REASONS.index(reason)
        g = ("denied", "granted").index(result)
    except ValueError:
        return -1
    if not 0 <= t <= 0xFFFFFFFF or not 0 <= up < 1 << 36 or len(card) != 8:
        return -1
    struct.pack_into("<BIIIIBB", w, 0, T_TAP, boot, seq, t, up & 0xFFFFFFFF,
                     (1 if synced else 0) | r << 1 | g << 3 | (up >> 32) << 4, c)
    w[19:27] = card
    reseal(w, TAP_SIZE, seq)
    return r


def reseal(w, size, seq):
    # Set the seq of the record in w and its crc.
    struct.pack_into("<I", w, 5, seq)
    struct.pack_into("<I", w, size - 4, crc32(memoryview(w)[:size - 4]) & 0xFFFFFFFF)


def read_record(f, j):
    # Read the record at f's position into j.rec (j.rbuf, or a buffer of its own for a long JSON
    # event). -> its size, 0 at a clean end, -1 if it is torn, corrupt or of an unknown kind.
    b = j.rec = j.rbuf
    n = f.readinto(memoryview(b)[:11])
    if not n:
        return 0
    if n < 11:
        return -1
    tag = b[0]
    if tag == T_TAP:
        size = TAP_SIZE
    elif tag == T_RAW:
        size = 15 + ((b[9] | b[10] << 8) & 0x7FFF)
        if size > RAW_MAX + 15:
            return -1
        if size > len(b):
            j.rec = bytearray(size)
            j.rec[:11] = b[:11]
            b = j.rec
    elif tag == T_DROP:
        size = DROP_SIZE
    else:
        return -1
    mv = memoryview(b)
    if f.readinto(mv[11:size]) != size - 11:
        return -1
    e = size - 4
    if crc32(mv[:e]) & 0xFFFFFFFF != b[e] | b[e + 1] << 8 | b[e + 2] << 16 | b[e + 3] << 24:
        return -1
    return size


def render(j):
    # The event JSON of the record in j.rec (bytes, or a memoryview into j.rec).
    b = j.rec
    tag = b[0]
    if tag == T_RAW:
        n = b[9] | b[10] << 8
        if n & STRIPPED:
            # The body joined from a view: one copy of it less per transmission.
            return b'{"boot":%d,"seq":%d,' % struct.unpack_from("<II", b, 1) \
                + memoryview(b)[11:11 + (n & 0x7FFF)]
        return memoryview(b)[11:11 + n]
    boot, seq, t, up, flags = struct.unpack_from("<IIIIB", b, 1)
    v = (boot, seq, t, flags & 1, up | (flags >> 4) << 32, _READERS[(flags >> 1) & 3])
    if tag == T_TAP:
        return _TAP % (v + (hexlify(b[19:27]), b"granted" if flags & 8 else b"denied",
                            _REASONS[b[18]]))
    return _DROP % (v + struct.unpack_from("<IIIII", b, 18))
