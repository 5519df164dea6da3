# MFRC522 driver (hal.mfrc522 + hal.mfrc522_spi) against the register-level emulator in
# tests/firmware/emul. Runs under CPython (pytest) and in the MicroPython VM (mp_runner).
import gc
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

gc.collect()  # compiling on a 64 KiB heap: free the parser's garbage between imports
from hal.mfrc522 import MFRC522  # noqa: E402

gc.collect()
from hal.mfrc522_spi import MFRC522SPI  # noqa: E402

gc.collect()
from buses import Clock  # noqa: E402

gc.collect()
from mfrc522_emu import Card, MFRC522Chip, crc_a  # noqa: E402

gc.collect()

UID4 = b"\xde\xad\xbe\xef"
UID7 = b"\x04\xa1\xb2\xc3\xd4\xe5\xf6"
UID10 = b"\x04\x11\x22\x33\x44\x55\x66\x77\x88\x99"


def setup(cards=(), irq=False):
    clock = Clock()
    chip = MFRC522Chip(clock, [Card(u) for u in cards])
    drv = MFRC522(MFRC522SPI(chip.spi, chip.cs), irq_pin=chip.irq if irq else None,
                  delay_us=clock.sleep_us)
    assert drv.init() == 0x92
    return clock, chip, drv


class _Rec:
    """SPI recorder: what goes over MOSI per CS window; MISO echoes a counter."""

    def __init__(self):
        self.frames = []

    def write(self, buf):
        self.frames[-1].extend(buf)

    def write_readinto(self, tx, rx):
        self.frames[-1].extend(tx)
        for i in range(len(rx)):
            rx[i] = 0x40 + i


class _RecCS:
    def __init__(self, rec):
        self.rec = rec

    def value(self, v=None):
        if v == 0:
            self.rec.frames.append(bytearray())


def test_spi_frame_format():
    rec = _Rec()
    bus = MFRC522SPI(rec, _RecCS(rec))
    bus.write_reg(0x01, 0x0F)
    assert bytes(rec.frames[-1]) == b"\x02\x0f"  # (reg << 1) & 0x7E
    assert bus.read_reg(0x37) == 0x41
    assert bytes(rec.frames[-1]) == b"\xee\x00"  # | 0x80 for a read, then 0x00
    buf = bytearray(3)
    assert bus.read_fifo(buf, 3) == 3
    assert bytes(rec.frames[-1]) == b"\x92\x92\x92\x00"
    assert bytes(buf) == b"\x41\x42\x43"  # MISO is one byte behind MOSI
    bus.write_fifo(b"\x93\x20")
    assert bytes(rec.frames[-1]) == b"\x12\x93\x20"  # one address byte, then a burst


def test_init_registers():
    _, chip, _ = setup()
    r = chip.r
    assert r[0x2A] == 0x80 and r[0x2B] == 0xA9  # TAuto, 40 kHz timer
    assert (r[0x2C] << 8) | r[0x2D] == 1000  # 1000 * 25 us = 25 ms
    assert r[0x15] == 0x40 and r[0x11] == 0x3D  # 100 % ASK, CRC preset 0x6363
    assert r[0x14] & 0x03 == 0x03  # antenna on


def test_init_without_chip():
    class Dead:
        def read_reg(self, reg):
            return 0

        def write_reg(self, reg, val):
            pass

    clock = Clock()
    try:
        MFRC522(Dead(), delay_us=clock.sleep_us).init()
    except OSError:
        return
    raise AssertionError("no OSError")


def test_uid_4_7_10():
    for uid in (UID4, UID7, UID10):
        _, chip, drv = setup([uid])
        assert drv.read_uid() == uid, uid
        assert drv.errors == 0
        frames = chip.over_the_air()
        assert frames[0] == b"\x26"  # REQA
        assert frames[1] == b"\x93\x20"
        levels = {4: 1, 7: 2, 10: 3}[len(uid)]
        assert drv.atqa == ((levels - 1) << 6) | 0x04
        assert [f[0] for f in frames if len(f) == 9] == [0x93, 0x95, 0x97][:levels]
        assert frames[-1] == b"\x50\x00\x57\xcd"  # HLTA
        assert chip.cards[0].state == "halt"
        assert drv.read_uid() is None  # halted card stays silent for REQA ...
        assert drv.read_uid(wake=True) == uid  # ... but answers WUPA


def test_empty_field_is_cheap_and_bounded():
    clock, chip, drv = setup()
    t0, n0 = clock.now_us, chip.bus.transfers
    assert drv.read_uid() is None
    spent = chip.bus.transfers - n0
    assert spent <= 17, spent
    elapsed = clock.now_us - t0
    assert 25000 <= elapsed <= 31000, elapsed  # ends soon after the 25 ms TimerIRq
    assert drv.errors == 0


def test_empty_field_with_irq_pin():
    clock, chip, drv = setup(irq=True)
    n0 = chip.bus.transfers
    assert drv.read_uid() is None
    assert chip.bus.transfers - n0 <= 8  # no register polling until the IRQ line falls
    chip.cards.append(Card(UID7))
    assert drv.read_uid() == UID7


def test_dead_timer_still_bounded():
    clock, chip, drv = setup()
    chip.timer_broken = True
    t0, n0 = clock.now_us, chip.bus.transfers
    assert drv.read_uid() is None
    assert chip.bus.transfers - n0 <= drv.max_polls + 8
    assert clock.now_us - t0 < 3 * 25000
    assert drv.errors == 1


def test_crc_a_vectors():
    assert crc_a(b"\x00\x00") == 0x1EA0  # ISO/IEC 14443-3 annex B
    assert crc_a(b"\x12\x34") == 0xCF26
    _, _, drv = setup()
    out = bytearray(2)
    for data, want in ((b"\x00\x00", b"\xa0\x1e"), (b"\x12\x34", b"\x26\xcf"),
                       (b"\x50\x00", b"\x57\xcd")):
        assert drv.crc_a(data, out, 0)
        assert bytes(out) == want, data


def test_error_flags():
    for err in (0x02, 0x01, 0x10):  # ParityErr, ProtocolErr, BufferOvfl
        _, chip, drv = setup([UID4])
        chip.inject = err
        assert drv.read_uid() is None
        assert drv.errors == 1 and drv.last_error & err
        got = None
        for _ in range(3):  # the card fell back to IDLE; a later poll reads it
            got = got or drv.read_uid()
        assert got == UID4


def test_error_during_anticollision():
    _, chip, drv = setup([UID7])
    assert drv.request() is not None
    chip.inject = 0x01
    assert drv.select() is None and drv.errors == 1


def test_two_cards_collision_resolved():
    a = b"\x86\xa0\x83\xee"
    b = b"\x16\x9a\x0a\x3b"  # first difference: bit 4 of byte 0 (a has 0, b has 1)
    _, chip, drv = setup([a, b])
    first = drv.read_uid()
    assert first == b and drv.collisions >= 1
    assert drv.read_uid() == a
    assert drv.read_uid() is None


def test_mixed_uid_sizes_collide():
    _, chip, drv = setup([UID4, UID7, UID10])
    got = set()
    for _ in range(3):
        u = drv.read_uid()
        assert u is not None
        got.add(u)
    assert got == {UID4, UID7, UID10}
    assert drv.read_uid() is None


class _EmptyFieldBus:
    """Minimal bus: every Transceive ends in TimerIRq at once (no emulator allocations)."""

    def __init__(self):
        self.n = 0

    def read_reg(self, reg):
        self.n += 1
        return 0x01 if reg == 0x04 else 0x92

    def write_reg(self, reg, val):
        self.n += 1

    def write_fifo(self, data):
        self.n += 1

    def read_fifo(self, buf, n):
        self.n += 1
        return n


def _nop(us):
    pass


def test_empty_poll_does_not_allocate():
    try:
        import micropython

        lock, unlock = micropython.heap_lock, micropython.heap_unlock
    except (ImportError, AttributeError):
        return  # CPython: nothing to check
    bus = _EmptyFieldBus()
    drv = MFRC522(bus, delay_us=_nop)
    drv.init()
    drv.read_uid()  # warm up
    n0 = bus.n
    lock()
    try:
        for _ in range(10):
            r = drv.read_uid()
    finally:
        unlock()
    assert r is None and (bus.n - n0) == 10 * 7  # 6 writes + 1 ComIrqReg read
