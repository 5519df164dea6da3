# PN532 over I2C (hal.pn532 + hal.pn532_i2c) against the I2C-level emulator in
# tests/firmware/emul. Runs under CPython (pytest) and in the MicroPython VM (mp_runner).
import gc
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

gc.collect()
from hal.pn532 import PN532, PN532Error  # noqa: E402

gc.collect()
from hal.pn532_i2c import PN532I2C  # noqa: E402

gc.collect()
from buses import Clock  # noqa: E402

gc.collect()
from pn532_emu import PN532Chip  # noqa: E402

gc.collect()

UID4 = b"\xde\xad\xbe\xef"
UID7 = b"\x04\xa1\xb2\xc3\xd4\xe5\xf6"


def setup(uids=(), init=True):
    clock = Clock()
    chip = PN532Chip(clock, uids)
    drv = PN532(PN532I2C(chip), delay_ms=clock.sleep_ms)
    if init:
        assert drv.init() == (0x32, 0x01, 0x06, 0x07)
    return clock, chip, drv


def test_frame_format():
    _, _, drv = setup(init=False)
    n = drv._build(0x02, b"")
    assert bytes(drv._tx[:n]) == b"\x00\x00\xff\x02\xfe\xd4\x02\x2a\x00"
    n = drv._build(0x4A, b"\x01\x00")
    assert bytes(drv._tx[:n]) == b"\x00\x00\xff\x04\xfc\xd4\x4a\x01\x00\xe1\x00"


def test_init_configures_sam_and_retries():
    _, chip, _ = setup()
    cmds = [c for c, _ in chip.received]
    assert cmds == [0x02, 0x14, 0x32]
    assert chip.received[1][1] == b"\x01\x14\x01"  # normal mode
    assert chip.config[0x05][2] == 1  # MxRtyPassiveActivation bounded
    assert chip.bad_frames == 0


def test_read_uid():
    for uid in (UID4, UID7):
        _, chip, drv = setup([uid])
        assert drv.read_uid() == uid
        assert chip.received[-1] == (0x4A, b"\x01\x00")  # MaxTg 1, 106 kbps type A
        assert drv.sak == 0x08 and drv.errors == 0


def test_no_card():
    clock, chip, drv = setup()
    t0, n0 = clock.now_us, chip.transactions
    assert drv.read_uid() is None
    assert drv.errors == 0
    assert chip.transactions - n0 <= 12
    assert clock.now_us - t0 <= 10000


def test_bad_checksums_rejected():
    for how in ("dcs", "lcs", "error"):
        _, chip, drv = setup([UID4])
        chip.corrupt_next = how
        assert drv.read_uid() is None, how
        assert drv.errors == 1
        assert drv.read_uid() == UID4  # the next poll is fine again


def test_nack_handled():
    _, chip, drv = setup([UID4])
    chip.nack_next = True
    assert drv.read_uid() is None and drv.errors == 1
    chip.nack_next = True
    try:
        drv.command(0x02)
    except PN532Error as e:
        assert "NACK" in str(e)
    else:
        raise AssertionError("NACK not reported")
    assert drv.read_uid() == UID4


def test_silent_chip_times_out_and_aborts():
    clock, chip, drv = setup([UID4])
    chip.resp_us = 10**9  # the response never comes
    t0 = clock.now_us
    assert drv.read_uid(timeout_ms=50) is None
    assert drv.timeouts == 1 and chip.aborts == 1  # aborted with an ACK frame
    assert clock.now_us - t0 <= 60000
    chip.resp_us = 4000
    assert drv.read_uid() == UID4


def test_no_ack_is_an_error():
    _, chip, drv = setup([UID4])
    chip.silent = True
    assert drv.read_uid() is None and drv.errors == 1


def test_busy_address_nak_is_not_ready():
    _, chip, drv = setup([UID4])
    chip.busy_naks = 2  # two status polls NAKed while the chip is busy
    chip.ack_us = 0
    # The write itself must succeed, so make the NAKs hit the status polls.
    drv.bus.write = _after_write(drv.bus.write, chip)
    assert drv.read_uid() == UID4
    assert drv.bus.nak == 2


def _after_write(write, chip):
    n = chip.busy_naks
    chip.busy_naks = 0

    def w(data):
        write(data)
        chip.busy_naks = n

    return w
