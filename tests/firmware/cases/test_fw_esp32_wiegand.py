# hal.esp32 built from every shipped board.json with Wiegand readers, on the machine shim whose
# D0/D1 pins are driven by the Wiegand emulator: outputs start OFF (low-level-trigger relays high),
# and frames sent on each reader's lines reach app.tap with the data bytes and the reader's name.
# Also: every shipped board uses only reader types some test_fw_esp32_* module covers.
# CPython and MicroPython VM.
import gc
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

# Heaviest modules first, while the 64 KiB heap is emptiest (compiling needs scratch RAM);
# the adapter's lazy driver imports then find them loaded. machine_shim goes in as `machine`
# before hal.esp32 is compiled.
gc.collect()
from wiegand_emu import WiegandReader, w26, w34  # noqa: E402

gc.collect()
import hal.wiegand  # noqa: E402,F401

gc.collect()
import machine_shim  # noqa: E402

sys.modules["machine"] = machine_shim
gc.collect()
import hal.esp32  # noqa: E402,F401

gc.collect()
import hal.readers  # noqa: E402,F401

gc.collect()
import esp32_checks  # noqa: E402,F401

gc.collect()
import esp32_harness as h  # noqa: E402

gc.collect()


def _wiegand(cfg):
    return [r for r in cfg["readers"] if r["type"] in ("wiegand26", "wiegand34")]


def _setup(cfg):
    machine_shim.reset()
    ems = []
    for rc in _wiegand(cfg):
        em = WiegandReader(machine_shim.RealClock())
        machine_shim.wire_pin(rc["pins"]["d0"], em.d0)
        machine_shim.wire_pin(rc["pins"]["d1"], em.d1)
        ems.append(em)
    board = h.build(cfg)
    h.check_outputs(cfg, board)
    return board, ems


def _frame(rc, fac, card):
    if rc["type"] == "wiegand26":
        return w26(fac, card), bytes([fac, card >> 8, card & 0xFF])
    return w34(fac, card), bytes([fac >> 8, fac & 0xFF, card >> 8, card & 0xFF])


async def _send(em, bits):
    from compat import sleep_ms
    for b in bits:  # ~2 ms per bit with the event loop (and the poll task) running in between
        pin = em.d1 if b else em.d0
        pin.drive(0)
        pin.drive(1)
        await sleep_ms(2)


def test_every_shipped_board_is_covered():
    names = h.board_files()
    assert len(names) >= 4
    for n in names:
        for r in h.load(n)["readers"]:
            assert r["type"] in h.COVERED, (n, r["type"])


def test_boards_exist():
    assert h.boards_with("wiegand26") or h.boards_with("wiegand34")


def test_frames_reach_app_tap():
    for name in h.names_with("wiegand26") + h.names_with("wiegand34"):
        cfg = h.load(name)
        board, ems = _setup(cfg)
        rcs = _wiegand(cfg)
        app = h.App()
        want = []

        async def feeder(rcs=rcs, ems=ems, want=want):
            from compat import sleep_ms
            await sleep_ms(120)
            for i in range(len(rcs)):
                bits, raw = _frame(rcs[i], 12 + i, 0xBEE0 + i)
                want.append((raw, rcs[i]["reader"]))
                await _send(ems[i], bits)
                await sleep_ms(60)

        beats = h.run(board, app, len(rcs), 3000, feeder)
        assert app.taps == want, (name, app.taps, want)
        assert beats >= 5, (name, beats)
        h.check_outputs(cfg, board)
        board = ems = app = cfg = None
        gc.collect()


def test_wrong_length_frame_is_dropped():
    name, cfg = (h.boards_with("wiegand26") + h.boards_with("wiegand34"))[0]
    board, ems = _setup(cfg)
    rc = _wiegand(cfg)[0]
    bits = w34(1, 2) if rc["type"] == "wiegand26" else w26(1, 2)
    app = h.App()

    async def feeder():
        await _send(ems[0], bits)

    h.run(board, app, 1, 300, feeder)
    assert not app.taps
    assert board.readers[0].wrong_format == 1
