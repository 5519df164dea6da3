# The MFRC522 emulator's CalcCRC as the datasheet describes it (NXP MFRC522 rev 3.9, 10.3.1.4):
# the CRC coprocessor keeps taking bytes written to the FIFO after the command started, until
# another command is written. What that catches: a driver that never stops the coprocessor loses
# the next frame into it. And our driver still reads every card. CPython and MicroPython VM.
import gc
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

gc.collect()
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

_CMD, _DIVIRQ, _FIFOLEVEL, _CRC_H, _CRC_L = 0x01, 0x05, 0x0A, 0x21, 0x22
_IDLE, _CALCCRC = 0x00, 0x03


class _NoIdleBus:
    """A driver variant that never stops the CRC coprocessor: every Idle command it writes to
    CommandReg is dropped before it reaches the chip."""

    def __init__(self, bus):
        self.bus = bus
        self.dropped = 0

    def write_reg(self, reg, val):
        if reg == _CMD and val == _IDLE:
            self.dropped += 1
            return
        self.bus.write_reg(reg, val)

    def read_reg(self, reg):
        return self.bus.read_reg(reg)

    def write_fifo(self, data):
        self.bus.write_fifo(data)

    def read_fifo(self, buf, n):
        return self.bus.read_fifo(buf, n)


def setup(cards=(), no_idle=False):
    clock = Clock()
    chip = MFRC522Chip(clock, [Card(u) for u in cards])
    bus = MFRC522SPI(chip.spi, chip.cs)
    if no_idle:
        bus = _NoIdleBus(bus)
    drv = MFRC522(bus, delay_us=clock.sleep_us)
    assert drv.init() == 0x92
    return clock, chip, bus, drv


def _result(bus):
    return (bus.read_reg(_CRC_H) << 8) | bus.read_reg(_CRC_L)


def _start_crc(clock, bus, data):
    bus.write_reg(_CMD, _IDLE)
    bus.write_reg(_DIVIRQ, 0x04)  # clear CRCIRq
    bus.write_reg(_FIFOLEVEL, 0x80)  # FlushBuffer
    bus.write_fifo(data)
    bus.write_reg(_CMD, _CALCCRC)
    clock.sleep_us(100)
    assert bus.read_reg(_DIVIRQ) & 0x04  # CRCIRq: everything so far processed


def test_calccrc_takes_bytes_written_after_it_started():
    clock, chip, bus, _ = setup()
    _start_crc(clock, bus, b"\x50")
    assert _result(bus) == crc_a(b"\x50")
    bus.write_fifo(b"\x00")  # CalcCRC is still the active command
    clock.sleep_us(100)
    assert bus.read_reg(_FIFOLEVEL) == 0  # the coprocessor consumed it
    assert _result(bus) == crc_a(b"\x50\x00") == 0xCD57  # HLTA's CRC_A: one running CRC


def test_another_command_stops_the_coprocessor():
    clock, chip, bus, _ = setup()
    _start_crc(clock, bus, b"\x12\x34")
    bus.write_reg(_CMD, _IDLE)
    bus.write_fifo(b"\x56")
    clock.sleep_us(100)
    assert bus.read_reg(_FIFOLEVEL) == 1  # stays in the FIFO
    assert _result(bus) == crc_a(b"\x12\x34") == 0xCF26
    # CalcCRC again starts over from the preset with what the FIFO holds.
    bus.write_reg(_CMD, _CALCCRC)
    clock.sleep_us(100)
    assert _result(bus) == crc_a(b"\x56") and bus.read_reg(_FIFOLEVEL) == 0


def test_fifo_written_after_starting_calccrc_is_included():
    # A driver variant that starts CalcCRC on an empty FIFO and writes the data afterwards: the
    # datasheet's chip includes the late bytes (the old emulator returned the preset's CRC).
    clock, chip, bus, _ = setup()
    _start_crc(clock, bus, b"")
    assert _result(bus) == 0x6363  # nothing processed yet: the preset
    bus.write_fifo(b"\x00\x00")
    clock.sleep_us(100)
    assert _result(bus) == 0x1EA0  # ISO/IEC 14443-3 annex B: CRC_A(00 00)
    bus.write_reg(_CMD, _IDLE)


def test_driver_that_never_stops_calccrc_fails_select():
    # Without Idle the SELECT frame written for Transceive goes into the still running CRC
    # coprocessor: the chip sends an empty frame, the card stays silent, no UID.
    clock, chip, bus, drv = setup([UID4], no_idle=True)
    assert drv.request() is not None
    assert drv.select() is None
    assert bus.dropped >= 3
    air = chip.over_the_air()
    assert air[-1] == b"", air  # what was left in the FIFO when Transceive started
    assert not [f for f in air if len(f) == 9], air  # no SELECT ever reached the card
    runs = [d for k, d in chip.log if k == "crc"]
    # The last CalcCRC run took its own 7 bytes, then the 9-byte SELECT meant for the card.
    assert len(runs[-1]) == 7 + 9 and runs[-1][:7] == runs[-1][7:14], runs


def test_our_driver_reads_cards_and_each_crc_run_takes_one_frame():
    for uid in (UID4, UID7, UID10):
        clock, chip, bus, drv = setup([uid])
        assert drv.read_uid() == uid, uid
        assert drv.errors == 0
        levels = {4: 1, 7: 2, 10: 3}[len(uid)]
        runs = [d for k, d in chip.log if k == "crc"]
        sel = [f for f in chip.over_the_air() if len(f) == 9]
        assert len(runs) == 2 * levels, runs  # SELECT frame, then the card's SAK, per level
        for i in range(levels):
            assert runs[2 * i] == sel[i][:7]  # exactly the frame, nothing written later
            assert len(runs[2 * i + 1]) == 1
        assert chip.r[_CMD] & 0x0F != _CALCCRC  # the driver left the coprocessor stopped
        gc.collect()
