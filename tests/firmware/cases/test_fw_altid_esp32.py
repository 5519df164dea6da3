# hal.esp32 built from a board.json with a QR scanner on a UART and a Wiegand reader with keys
# (hal.altreaders, D29-J), on the machine shim: the scanner emulator's bytes reach the driver
# through machine.UART and the code goes to app.altid.qr; key frames played on the reader's
# D0/D1 pins become a pupil number + PIN for app.altid.pin; a card frame on the same lines still
# goes to app.tap. CPython and MicroPython VM: the whole run (the adapter's tasks, asyncio, both
# emulators, the verification) does not fit the 64 KiB the case modules get, so the VM runs it
# with QADAM_FW_FULL=1 in a bigger heap (tests/firmware/test_altid_vm.py) and the build alone here.
import gc
import os
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

gc.collect()
import machine_shim  # noqa: E402

sys.modules["machine"] = machine_shim
gc.collect()
import hal.esp32  # noqa: E402,F401

gc.collect()
import esp32_harness as h  # noqa: E402
from qrscan_emu import ScannerUART  # noqa: E402
from wiegand_emu import WiegandReader, int_bits, w34_bytes  # noqa: E402

gc.collect()

SITE = b"s" * 32
CFG = {
    "hal": "esp32", "mode": "door",
    "readers": [{"type": "wiegand34", "reader": "in", "keypad": True,
                 "pins": {"d0": 32, "d1": 33}}],
    "qr_scanners": [{"reader": "in", "uart": {"id": 2, "rx": 16, "tx": 17}}],
    "relays": [{"pin": 26}],
}


class Door:
    # app.altid's view of the door: the site key, the whitelist, the clock; decide() records.
    def __init__(self):
        from store.altkey import person_key, pin_key
        pk = person_key(SITE, b"1234")
        self.recs = {pk: 0x71, pin_key(SITE, pk, b"5678"): 0x80}
        self.site_key = SITE
        self.wl = self
        self.wl_reason = "no_whitelist"
        self.clock = self
        self.synced = True
        self.reader = "in"
        self.calls = []
        self.rec = 0

    def lookup(self, key):
        self.rec = self.recs.get(bytes(key), 0)
        return bool(self.rec)

    def attrs(self):
        return self.rec

    def now(self):
        return 1765180800 + 10

    def up_ms(self):
        return 1000

    def decide(self, key, reader, method=None, why=None):
        self.calls.append((method, why, reader))


FULL = sys.implementation.name != "micropython" or os.getenv("QADAM_FW_FULL") == "1"


def _wire():
    machine_shim.reset()
    clock = machine_shim.RealClock()
    scanner = ScannerUART(clock, 115200)
    machine_shim.wire_uart(16, scanner)
    wg = WiegandReader(clock)
    machine_shim.wire_pin(32, wg.d0)
    machine_shim.wire_pin(33, wg.d1)
    return scanner, wg, h.build(CFG)


def test_the_board_builds_its_scanner_and_keypad_reader():
    scanner, wg, board = _wire()
    assert [r.kind for r in board.readers] == ["wiegand", "qrscan"]
    assert [u.baudrate for u in machine_shim.uarts] == [9600] and board.readers[1].drv.uart.dev \
        is scanner
    assert board.readers[0].bits == 34 and board.readers[0].pad is not None


def _full():
    import binascii

    from store.altkey import person_key, qr_key, qr_tag

    scanner, wg, board = _wire()
    app = h.App()
    app.door = Door()
    pk = person_key(SITE, b"1234")
    step = (1765180800 + 10) // 30
    code = b"Q1.1234.%d.%s" % (step, binascii.hexlify(qr_tag(qr_key(SITE, pk), pk, step)))

    async def feeder():
        from compat import sleep_ms
        await sleep_ms(100)
        scanner.scan(code)
        await sleep_ms(120)
        for ch in "1234#5678#":
            k = 11 if ch == "#" else ord(ch) - 48
            for b in int_bits(k, 4):
                pin = wg.d1 if b else wg.d0
                pin.drive(0)
                pin.drive(1)
                await sleep_ms(2)
            await sleep_ms(40)  # the frame ends by the gap (25 ms)
        for b in w34_bytes(b"\x04\x01\x02\x03"):
            pin = wg.d1 if b else wg.d0
            pin.drive(0)
            pin.drive(1)
            await sleep_ms(2)

    h.run(board, app, 1, 4000, feeder)
    assert app.door.calls == [("qr", None, "in"), ("pin", None, "in")], app.door.calls
    assert app.taps == [(b"\x04\x01\x02\x03", "in")], app.taps


if FULL:
    test_a_scanned_code_and_a_typed_pin_reach_altid_and_a_card_app_tap = _full
