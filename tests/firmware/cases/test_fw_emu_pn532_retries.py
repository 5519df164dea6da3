# The PN532 emulator's InListPassiveTarget honours RFConfiguration MaxRetries (CfgItem 0x05) as in
# UM0701-02 7.3.1: MxRtyPassiveActivation 0xFF, the power-up default, searches until a card comes;
# N gives up after N retries. What that catches: a driver that never sets MaxRetries gets no answer
# on an empty field and only its own timeout ends the poll. Ours is answered "no target". All times
# are the emulator's virtual clock. CPython and MicroPython VM.
import gc
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

gc.collect()
from hal.pn532 import PN532  # noqa: E402

gc.collect()
from hal.pn532_i2c import PN532I2C  # noqa: E402

gc.collect()
from buses import Clock  # noqa: E402

gc.collect()
from pn532_emu import ACK, Card, PN532Chip, frame  # noqa: E402

gc.collect()

UID4 = b"\xde\xad\xbe\xef"
UID7 = b"\x04\xa1\xb2\xc3\xd4\xe5\xf6"


def setup(uids=()):
    clock = Clock()
    chip = PN532Chip(clock, uids)
    drv = PN532(PN532I2C(chip), delay_ms=clock.sleep_ms)
    return clock, chip, drv


def _init_without_max_retries(drv):
    """A driver variant that forgot RFConfiguration: firmware version and SAM only."""
    assert bytes(drv.command(0x02)) == b"\x32\x01\x06\x07"
    assert drv.command(0x14, b"\x01\x14\x01") is not None


def test_without_max_retries_the_empty_field_poll_times_out():
    clock, chip, drv = setup()
    _init_without_max_retries(drv)
    assert 0x05 not in chip.config
    assert drv.read_uid(timeout_ms=50) is None
    assert drv.timeouts == 1 and chip.aborts == 1  # only the driver's own timeout ended it
    assert drv.errors == 0


def test_our_driver_is_answered_no_target():
    clock, chip, drv = setup()
    drv.init()
    assert chip.config[0x05] == b"\xff\x01\x01"  # MxRtyATR, MxRtyPSL, MxRtyPassiveActivation
    for _ in range(3):
        assert drv.read_uid(timeout_ms=50) is None
    assert drv.timeouts == 0 and chip.aborts == 0 and drv.errors == 0
    chip.cards.append(Card(UID7))
    assert drv.read_uid(timeout_ms=50) == UID7


def test_default_max_retries_waits_for_a_card():
    clock, chip, drv = setup()
    _init_without_max_retries(drv)
    t_card = clock.now_us + 300000

    def arrive(chip=chip, clock=clock):
        if clock.now_us >= t_card and not chip.cards:
            chip.cards.append(Card(UID4))

    clock.listeners.append(arrive)
    d = drv.command(0x4A, b"\x01\x00", timeout_ms=1000)  # still searching when the card comes
    assert d is not None and bytes(d[6:]) == UID4 and d[0] == 1
    assert t_card <= clock.now_us <= t_card + 10000
    assert drv.timeouts == 0 and chip.aborts == 0


def _list_passive(chip, clock):
    chip.writeto(chip.addr, frame(b"\x4a\x01\x00", 0xD4))
    clock.sleep_us(chip.ack_us)
    buf = bytearray(7)
    chip.readfrom_into(chip.addr, buf)
    assert bytes(buf[1:]) == ACK
    return clock.now_us


def _ready(chip):
    st = bytearray(1)
    chip.readfrom_into(chip.addr, st)
    return st[0] & 1


def test_max_retries_n_answers_after_n_retries():
    for n in (0, 1, 5, 0xFE):
        clock, chip, drv = setup()
        drv.init(retries=n)
        t0 = _list_passive(chip, clock)
        done = t0 + chip.resp_us + n * chip.retry_us  # n retries after the first try
        clock.sleep_us(done - 1 - clock.now_us)
        assert not _ready(chip), n
        clock.sleep_us(1)
        assert _ready(chip), n
        buf = bytearray(12)
        chip.readfrom_into(chip.addr, buf)
        assert bytes(buf[1:11]) == frame(b"\x4b\x00"), (n, bytes(buf))  # NbTg 0


def test_forever_search_stays_busy_until_aborted():
    clock, chip, drv = setup()
    _init_without_max_retries(drv)
    _list_passive(chip, clock)
    for _ in range(10):
        clock.sleep_ms(1000)
        assert not _ready(chip)  # ten virtual seconds, still searching
    chip.writeto(chip.addr, ACK)  # UM0701 6.2.1.3: the host aborts
    assert chip.aborts == 1
    chip.cards.append(Card(UID4))
    clock.sleep_ms(10)
    assert not _ready(chip)  # aborted: no late answer
    drv.init()  # a new command works at once
    assert drv.read_uid() == UID4
