# hal.esp32 built from every shipped board.json with an MFRC522 reader, on the machine shim backed
# by the register-level MFRC522 emulator: outputs start OFF, and an emulated card put on the reader
# reaches app.tap with its UID and the configured reader name. CPython and MicroPython VM.
import gc
import os
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

# Heaviest modules first, while the 64 KiB heap is emptiest (compiling needs scratch RAM);
# the adapter's lazy driver imports then find them loaded. machine_shim goes in as `machine`
# before hal.esp32 is compiled.
gc.collect()
import hal.mfrc522  # noqa: E402,F401

gc.collect()
import hal.mfrc522_spi  # noqa: E402,F401

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

UID = b"\x04\xa1\xb2\xc3\xd4\xe5\xf6"

# The register-level MFRC522 emulator (11 KiB of heap) on top of the driver, the adapter, asyncio
# and the machine shim needs about 76 KiB in the MicroPython VM, more than the 64 KiB the case
# modules get. So the emulator-backed tap tests run under CPython only; the VM runs the rest of
# this module (board built from each MFRC522 board.json, boot-safe outputs, absent chip), and
# test_fw_drv_mfrc522 runs the driver against the emulator in the VM. The poll-task path to
# app.tap is covered in the VM by test_fw_esp32_pn532 and test_fw_esp32_wiegand.
# QADAM_FW_FULL=1: test_fw_micropython.py also runs this module in a VM big enough for all of it.
FULL = sys.implementation.name != "micropython" or os.getenv("QADAM_FW_FULL") == "1"
if FULL:
    from mfrc522_emu import Card, MFRC522Chip


def _wire(cfg, chip):
    rc = [r for r in cfg["readers"] if r["type"] == "mfrc522"][0]
    machine_shim.wire_spi(chip.bus)
    machine_shim.wire_pin(rc["pins"]["cs"], chip.cs)
    if rc["pins"].get("irq") is not None:
        machine_shim.wire_pin(rc["pins"]["irq"], chip.irq)
    return rc


def test_boards_exist():
    assert len(h.boards_with("mfrc522")) >= 2


def _card_reaches_app_tap():
    for name, cfg in h.boards_with("mfrc522"):
        machine_shim.reset()
        chip = MFRC522Chip(machine_shim.RealClock())
        rc = _wire(cfg, chip)
        board = h.build(cfg)
        h.check_outputs(cfg, board)
        rst = rc["pins"].get("rst")
        if rst is not None:
            p = machine_shim.pins[rst]
            assert p.first == 1 and p.seen == 2, name  # reset released, never pulsed low
        app = h.App()

        async def feeder(app=app, chip=chip):
            from compat import sleep_ms
            await sleep_ms(250)  # a few empty-field polls first
            assert not app.taps
            chip.cards.append(Card(UID))

        beats = h.run(board, app, 1, 3000, feeder)
        assert app.taps == [(UID, rc["reader"])], (name, app.taps)
        polls = len([1 for k, d in chip.log if k == "tx" and d == b"\x26"])
        assert polls >= 2, (name, polls)  # REQA polls went over the (emulated) air
        assert beats >= 5, (name, beats)  # the event loop kept running between polls
        h.check_outputs(cfg, board)  # still nothing switched by the reader task
        gc.collect()


def _held_card_is_read_once():
    name, cfg = h.boards_with("mfrc522")[0]
    machine_shim.reset()
    chip = MFRC522Chip(machine_shim.RealClock(), [Card(UID[:4])])
    rc = _wire(cfg, chip)
    board = h.build(cfg)
    app = h.App()
    h.run(board, app, 2, 600)  # wait for a second tap that must not come
    assert app.taps == [(UID[:4], rc["reader"])], app.taps


def test_absent_chip_does_not_block():
    name, cfg = h.boards_with("mfrc522")[0]
    machine_shim.reset()  # nothing wired: MISO floats high, VersionReg reads 0xff
    board = h.build(cfg)
    h.check_outputs(cfg, board)
    app = h.App()
    beats = h.run(board, app, 1, 300)
    assert not app.taps and beats >= 10, beats
    # The failed init is in the board's last errors (net.sync Sync.error), under the reader.
    rc = [r for r in cfg["readers"] if r["type"] == "mfrc522"][0]
    assert app.errors and app.errors[0][0] == rc["reader"], app.errors
    assert isinstance(app.errors[0][1], OSError), app.errors


def test_boards_build_with_outputs_off():
    for name, cfg in h.boards_with("mfrc522"):
        machine_shim.reset()
        board = h.build(cfg)
        h.check_outputs(cfg, board)
        rc = [r for r in cfg["readers"] if r["type"] == "mfrc522"][0]
        assert [rd.name for rd in board.readers] == [rc["reader"]]
        assert board.readers[0].kind == "mfrc522"
        cs = machine_shim.pins[rc["pins"]["cs"]]
        assert cs.first == 1 and cs.seen == 2, name  # chip select created deselected, untouched
        gc.collect()


if FULL:
    test_card_reaches_app_tap = _card_reaches_app_tap
    test_held_card_is_read_once = _held_card_is_read_once
