# hal.esp32 built from every shipped board.json with a PN532 reader, on the machine shim backed by
# the I2C-level PN532 emulator: outputs start OFF, and an emulated card reaches app.tap with its UID
# and the configured reader name. CPython and MicroPython VM.
import gc
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

# Heaviest modules first, while the 64 KiB heap is emptiest (compiling needs scratch RAM);
# the adapter's lazy driver imports then find them loaded. machine_shim goes in as `machine`
# before hal.esp32 is compiled.
gc.collect()
from pn532_emu import Card, PN532Chip  # noqa: E402

gc.collect()
import hal.pn532  # noqa: E402,F401

gc.collect()
import hal.pn532_i2c  # noqa: E402,F401

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


def test_boards_exist():
    assert h.boards_with("pn532")


def test_card_reaches_app_tap():
    for name, cfg in h.boards_with("pn532"):
        machine_shim.reset()
        rc = [r for r in cfg["readers"] if r["type"] == "pn532"][0]
        chip = PN532Chip(machine_shim.RealClock(), (), rc.get("address", 0x24))
        machine_shim.wire_i2c(chip)
        board = h.build(cfg)
        h.check_outputs(cfg, board)
        reset = (rc.get("pins") or {}).get("reset")
        if reset is not None:
            p = machine_shim.pins[reset]
            assert p.first == 1 and p.seen == 2, name  # RSTPDN released, never pulsed low
        app = h.App()

        async def feeder(app=app, chip=chip):
            from compat import sleep_ms
            await sleep_ms(250)
            assert not app.taps
            chip.cards.append(Card(UID))

        beats = h.run(board, app, 1, 3000, feeder)
        assert app.taps == [(UID, rc["reader"])], (name, app.taps)
        polls = len([1 for c, _ in chip.received if c == 0x4A])
        assert polls >= 2, (name, polls)  # InListPassiveTarget on the empty field, then the card
        assert beats >= 5, (name, beats)
        h.check_outputs(cfg, board)
        gc.collect()


def test_absent_chip_does_not_block():
    name, cfg = h.boards_with("pn532")[0]
    machine_shim.reset()  # nothing at the address: every transaction NAKs (OSError)
    board = h.build(cfg)
    h.check_outputs(cfg, board)
    app = h.App()
    beats = h.run(board, app, 1, 300)
    assert not app.taps and beats >= 10, beats
    # The failed init is in the board's last errors (net.sync Sync.error), under the reader.
    rc = [r for r in cfg["readers"] if r["type"] == "pn532"][0]
    assert app.errors and app.errors[0][0] == rc["reader"], app.errors
    assert isinstance(app.errors[0][1], OSError), app.errors


def test_rejected_frames_reach_the_last_errors():
    # The driver counts a NACKed frame (no exception, read_uid returns None); the reader task
    # sees its counter move and records it with the reader's name.
    name, cfg = h.boards_with("pn532")[0]
    machine_shim.reset()
    rc = [r for r in cfg["readers"] if r["type"] == "pn532"][0]
    chip = PN532Chip(machine_shim.RealClock(), (), rc.get("address", 0x24))
    machine_shim.wire_i2c(chip)
    board = h.build(cfg)
    app = h.App()
    before = []

    async def feeder(chip=chip, app=app, before=before):
        from compat import sleep_ms
        await sleep_ms(250)
        before.extend(app.errors)  # set up and polling cleanly so far
        chip.nack_next = True  # the next InListPassiveTarget is NACKed

    h.run(board, app, 1, 800, feeder)  # no card: runs the whole 800 ms
    assert before == [] and chip.received, (before, chip.received)
    assert app.errors == [(rc["reader"], "pn532 frame 00")], app.errors
