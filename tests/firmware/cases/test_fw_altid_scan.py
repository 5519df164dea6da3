# The serial QR scanner driver (hal.qrscan) fed by the UART-level scanner emulator, and the
# Wiegand keypad path (hal.wgkeys, hal.keypad): key frames of 4 and 8 bits played on the D0/D1
# pins by the Wiegand emulator, and the PIN entry. CPython (pytest) and MicroPython VM (64 KiB).
import gc
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

gc.collect()
from hal.keypad import HASH, STAR, PinPad  # noqa: E402
from hal.qrscan import QRScanner  # noqa: E402
from hal.wgkeys import KeypadWiegand  # noqa: E402

gc.collect()
from buses import Clock  # noqa: E402
from qrscan_emu import ScannerUART  # noqa: E402
from wiegand_emu import WiegandReader, int_bits, w34_bytes  # noqa: E402

CODE = b"Q1.1234.58000000.0123456789abcdef"


def _uart(baud=9600):
    clock = Clock()
    return clock, ScannerUART(clock, baud)


def test_a_line_arrives_byte_by_byte_at_the_baud_rate():
    clock, u = _uart()
    sc = QRScanner(u)
    u.scan(CODE)
    assert sc.poll() is None  # nothing has arrived yet
    clock.sleep_us(len(CODE) * 1041)  # all but the terminator (1.04 ms a byte at 9600 8N1)
    assert sc.poll() is None and sc.n == len(CODE)
    clock.sleep_ms(2)
    assert sc.poll() == CODE
    assert sc.poll() is None and sc.lines == 1


def test_crlf_lf_and_two_codes_back_to_back():
    clock, u = _uart(115200)
    sc = QRScanner(u)
    u.scan(CODE, b"\r\n")
    u.scan(b"Q1.7.1.ffffffffffffffff", b"\n")
    u.scan(b"second", b"\r")
    u.wait_sent()
    assert sc.poll() == CODE
    assert sc.poll() == b"Q1.7.1.ffffffffffffffff"  # the LF of CR LF made no empty line
    assert sc.poll() == b"second"
    assert sc.poll() is None and sc.lines == 3


def test_a_too_long_line_is_dropped_whole_and_the_next_one_read():
    clock, u = _uart()
    sc = QRScanner(u, maxlen=40)
    u.scan(b"x" * 100)
    u.scan(CODE)
    u.wait_sent()
    assert sc.poll() == CODE  # not the tail of the long one
    assert sc.too_long == 1 and sc.lines == 1


def test_poll_reads_what_has_arrived_and_never_waits():
    clock, u = _uart()
    sc = QRScanner(u)
    t0 = clock.now_us
    for _ in range(5):
        assert sc.poll() is None
    assert clock.now_us == t0  # the driver did not sleep
    u.scan(CODE)
    got = None
    while got is None:
        clock.sleep_ms(5)
        got = sc.poll()
    assert got == CODE


def _kp():
    clock = Clock()
    rd = WiegandReader(clock)
    wg = KeypadWiegand(rd.d0, rd.d1, gap_ms=25, ticks_ms=clock.ticks_ms)
    return clock, rd, wg


def _key8(k):
    return int_bits((k ^ 0xF) << 4 | k, 8)


def test_keypad_4_and_8_bit_key_frames_and_cards_on_the_same_lines():
    clock, rd, wg = _kp()
    got = []
    for bits in (int_bits(7, 4), _key8(3), int_bits(HASH, 4), _key8(STAR),
                 w34_bytes(b"\x01\x02\x03\x04")):
        rd.send(bits)
        clock.sleep_ms(30)
        got.append(wg.poll())
    assert got[0] == (4, 0, 7, b"")
    assert got[1] == (8, 0, 3, b"")
    assert got[2] == (4, 0, HASH, b"")
    assert got[3] == (8, 0, STAR, b"")
    assert got[4][0] == 34 and got[4][3] == b"\x01\x02\x03\x04"  # a card still reads


def test_an_8_bit_key_with_a_bad_complement_is_refused():
    clock, rd, wg = _kp()
    rd.send(int_bits(0x35, 8))  # high nibble 3 is not the complement of 5
    clock.sleep_ms(30)
    assert wg.poll() is None and wg.bad_parity == 1


def _type(pad, keys, t=0, step=200):
    out = None
    for ch in keys:
        k = STAR if ch == "*" else HASH if ch == "#" else ord(ch) - 48
        t += step
        r = pad.key(k, t)
        if r is not None:
            out = r
    return out, t


def _diff(a, b):
    return a - b


def test_pin_entry_number_hash_pin_hash():
    pad = PinPad(ticks_diff=_diff)
    assert _type(pad, "1234#5678#")[0] == (b"1234", b"5678")
    assert _type(pad, "12*99#11#")[0] == (b"99", b"11")  # `*` cleared the 12
    assert _type(pad, "#")[0] is None and pad.bad == 1  # no number
    assert _type(pad, "5##")[0] is None and pad.bad == 2  # no PIN


def test_pin_entry_times_out_and_too_long_entries_are_void():
    pad = PinPad(timeout_ms=5000, ticks_diff=_diff)
    _, t = _type(pad, "1234#56")
    got, _ = _type(pad, "78#", t + 6000)  # the rest typed after the timeout
    assert got is None  # "78" became a number; no PIN followed
    # 9 PIN digits > 8: the entry is void (bad 1), and the `#` after it ends an empty one (2)
    assert _type(pad, "*1#123456789#")[0] is None and pad.bad == 2
    got, t = _type(pad, "1234#5678#", 0, 4000)  # slow, but within the timeout per key
    assert got == (b"1234", b"5678")
