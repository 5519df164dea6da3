# Journal records <-> event JSON (docs/protocol.md "Journal"). The JSON is a pure function of the
# stored bytes, so every transmission of an event is byte-identical.
import struct
from binascii import crc32, hexlify

T_TAP = 0x54  # "T": a tap, 31 bytes
T_RAW = 0x4A  # "J": an event as JSON
T_DROP = 0x44  # "D": a "dropped" event, 46 bytes
T_NP = 0x4E  # "N": a "not_passed" event, 35 bytes (a tap's fields + ref u32)
STRIPPED = 0x8000  # raw len flag: the '{"boot":B,"seq":S,' prefix was stripped (rebuilt on read)
READERS = ("in", "out", "canteen")
REASONS = ("ok", "unknown_card", "no_whitelist", "bad_whitelist")
MAGIC = b"QJ1\n"  # segment header
RAW_MAX = 512  # longest JSON event stored as such
TAP_SIZE = 31
NP_SIZE = 35
DROP_SIZE = 46  # also the reserve kept free at the end of every segment

PREFIX = b'{"boot":%d,"seq":%d,'  # of a "J" record with STRIPPED
# Whole literals (not built by concatenation at import): a board runs them in place from flash.
_TAP = (b'{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"tap","reader":"%s","card":"%s",'
        b'"result":"%s","reason":"%s"}')
_DROP = (b'{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"dropped","reader":"%s",'
         b'"card":"0000000000000000","result":"denied","reason":"journal_full","dropped":%d,'
         b'"from":[%d,%d],"to":[%d,%d]}')
_NP = (b'{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"not_passed","reader":"%s",'
       b'"card":"%s","result":"granted","reason":"passage_timeout","ref":%d}')


def tap_json(boot, seq, t, synced, up, reader, card, result, reason, ref=None):
    # The same JSON as render() gives for a compact tap (with `ref`: a "not_passed" event, always
    # granted/passage_timeout); for values the compact form cannot hold.
    v = (boot, seq, t, 1 if synced else 0, up, reader.encode(), hexlify(card))
    if ref is not None:
        return _NP % (v + (ref,))
    return _TAP % (v + (result.encode(), reason.encode()))


def pack_tap(w, boot, seq, t, synced, up, reader, card, result, reason, ref=None):
    # Encode a tap record (with `ref`: a "not_passed" one) into w. -> the reader code, or -1 if
    # a value does not fit.
    try:
        r = READERS.index(reader)
        c = 0 if ref is not None else REASONS.index(reason)
    except ValueError:
        return -1
    g = 1 if result == "granted" else (0 if result == "denied" else -1)
    if g < 0:
        return -1
    if not 0 <= t <= 0xFFFFFFFF or not 0 <= up < 1 << 36 or len(card) != 8:
        return -1
    struct.pack_into("<BIIIIBB", w, 0, T_TAP if ref is None else T_NP, boot, seq, t,
                     up & 0xFFFFFFFF, (1 if synced else 0) | r << 1 | g << 3 | (up >> 32) << 4, c)
    w[19:27] = card
    if ref is None:
        reseal(w, TAP_SIZE, seq)
    else:
        if not 0 <= ref <= 0xFFFFFFFF:
            return -1
        struct.pack_into("<I", w, 27, ref)
        reseal(w, NP_SIZE, seq)
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
    elif tag == T_NP:
        size = NP_SIZE
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
            return PREFIX % struct.unpack_from("<II", b, 1) \
                + memoryview(b)[11:11 + (n & 0x7FFF)]
        return memoryview(b)[11:11 + n]
    boot, seq, t, up, flags = struct.unpack_from("<IIIIB", b, 1)
    # The names as str constants (qstrs), encoded per render: bytes constants would each be an
    # object in the heap for good (64 KiB boards, docs/decisions.md D16).
    v = (boot, seq, t, flags & 1, up | (flags >> 4) << 32, READERS[(flags >> 1) & 3].encode())
    if tag == T_TAP:
        return _TAP % (v + (hexlify(b[19:27]), ("granted" if flags & 8 else "denied").encode(),
                            REASONS[b[18]].encode()))
    if tag == T_NP:
        return _NP % (v + (hexlify(b[19:27]), b[27] | b[28] << 8 | b[29] << 16 | b[30] << 24))
    return _DROP % (v + struct.unpack_from("<IIIII", b, 18))
