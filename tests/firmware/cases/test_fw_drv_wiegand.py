# Wiegand 26/34 receiver (hal.wiegand) fed by the pin-level generator in tests/firmware/emul, and
# card identity normalisation across reader types. CPython (pytest) and MicroPython VM.
import gc
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

gc.collect()
from hal.wiegand import Wiegand  # noqa: E402

gc.collect()
from buses import Clock  # noqa: E402
from wiegand_emu import WiegandReader, frame_bits, w26, w34, w34_bytes  # noqa: E402

gc.collect()


def setup():
    clock = Clock()
    rd = WiegandReader(clock)
    wg = Wiegand(rd.d0, rd.d1, gap_ms=25, ticks_ms=clock.ticks_ms)
    return clock, rd, wg


def test_w26_good_frame():
    clock, rd, wg = setup()
    rd.send(w26(123, 45678))
    assert wg.poll() is None  # the line has not been quiet for the gap yet
    clock.sleep_ms(30)
    assert wg.poll() == (26, 123, 45678, bytes([123, 45678 >> 8, 45678 & 0xFF]))
    assert wg.poll() is None and wg.frames == 1


def test_w34_good_frame():
    clock, rd, wg = setup()
    rd.send(w34(0xBEEF, 0x1234))
    clock.sleep_ms(30)
    assert wg.poll() == (34, 0xBEEF, 0x1234, b"\xbe\xef\x12\x34")


def test_known_w26_bit_pattern():
    # Facility 1, card 1: 0 00000001 0000000000000001 0 -> P_even = 1 bit set in first 12 data
    # bits => 1; P_odd: one 1 in the last 12 data bits => 0.
    bits = w26(1, 1)
    assert bits[0] == 1 and bits[-1] == 0 and len(bits) == 26


def test_each_bad_parity_rejected():
    for build, n in ((w26, 26), (w34, 34)):
        good = build(200, 513)
        for pos in (0, n - 1, 3, n - 4):  # each parity bit, and a data bit in each half
            clock, rd, wg = setup()
            bits = list(good)
            bits[pos] ^= 1
            rd.send(bits)
            clock.sleep_ms(30)
            assert wg.poll() is None, (n, pos)
            assert wg.bad_parity == 1 and wg.frames == 0
            rd.send(good)  # the receiver is ready for the next frame
            clock.sleep_ms(30)
            assert wg.poll()[2] == 513


def test_truncated_frame_rejected():
    clock, rd, wg = setup()
    rd.send(w26(1, 2)[:20])
    clock.sleep_ms(30)
    assert wg.poll() is None and wg.bad_length == 1
    rd.send(frame_bits([1] * 70))  # overlong noise
    clock.sleep_ms(30)
    assert wg.poll() is None and wg.bad_length == 2


def test_gap_splits_frames_even_when_poll_is_late():
    clock, rd, wg = setup()
    rd.send(w26(7, 8))
    clock.sleep_ms(30)
    rd.send(w34(9, 10))  # nobody polled in between: the handler parks the first frame
    clock.sleep_ms(30)
    assert wg.poll()[:3] == (26, 7, 8)
    assert wg.poll()[:3] == (34, 9, 10)
    assert wg.poll() is None and wg.overruns == 0
    for f in (1, 2, 3):  # three frames, no poll: the middle one is dropped and counted
        rd.send(w26(f, f))
        clock.sleep_ms(30)
    assert wg.poll()[1] == 1 and wg.poll()[1] == 3 and wg.overruns == 1


def test_same_card_same_key_mfrc522_and_w34():
    from hal.readers import normalise_uid

    uid = b"\xde\xad\xbe\xef"
    clock, rd, wg = setup()
    rd.send(w34_bytes(uid))  # a W34 reader configured to output the 4-byte UID
    clock.sleep_ms(30)
    raw = wg.poll()[3]
    assert normalise_uid("wiegand", raw) == normalise_uid("mfrc522", uid) == uid
    assert normalise_uid("pn532", uid) == uid
    rev = bytes(reversed(uid))  # a reader that sends the UID LSB first
    assert normalise_uid("wiegand", rev, reverse=True) == uid
    assert normalise_uid("wiegand", b"\x01\x02\x03") == b"\x01\x02\x03"  # W26: 3 bytes
    for kind, data in (("mfrc522", b"\x01\x02"), ("wiegand", b"\x01"), ("nfc?", b"1234")):
        try:
            normalise_uid(kind, data)
        except ValueError:
            continue
        raise AssertionError(kind)


def test_interrupt_handlers_do_not_allocate():
    try:
        import micropython

        lock, unlock = micropython.heap_lock, micropython.heap_unlock
    except (ImportError, AttributeError):
        return  # CPython: nothing to check
    clock, rd, wg = setup()
    bits = w34(0xBEEF, 0x1234)
    lock()
    try:
        rd.send(bits)
    finally:
        unlock()
    clock.sleep_ms(30)
    assert wg.poll()[1:3] == (0xBEEF, 0x1234)
