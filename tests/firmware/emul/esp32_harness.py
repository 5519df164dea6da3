# Shared by the tests/firmware/cases/test_fw_esp32_*.py modules: installs machine_shim as
# the `machine` module (if the case module has not), loads the shipped board-configs/*.json,
# builds hal.esp32.Board from them, checks that every output starts at its OFF level
# (esp32_checks), and runs the board's reader tasks under asyncio.
# CPython and MicroPython (64 KiB heap) compatible.
import json
import os
import sys

import machine_shim

sys.modules["machine"] = machine_shim  # before hal.esp32 is imported

COVERED = ("mfrc522", "pn532", "wiegand26", "wiegand34")  # reader types the emulators model


def _boards_dir():
    for p in sys.path:
        if p.endswith("emul"):
            return p + "/../../../board-configs"
    import os
    try:  # precompiled cases (test_fw_micropython.py) run from the repository root
        os.stat("board-configs")
        return "board-configs"
    except OSError:
        raise OSError("board-configs/ not found: tests/firmware/emul not on sys.path")


BOARDS = _boards_dir()


def board_files():
    return sorted(n for n in os.listdir(BOARDS) if n.endswith(".json") and n != "schema.json")


def load(name):
    with open(BOARDS + "/" + name) as f:
        return json.load(f)


def names_with(rtype):
    """File names of the shipped boards with a reader of type `rtype` (one config in the heap at
    a time: a 64 KiB VM cannot hold every board's dict at once)."""
    out = []
    for n in board_files():
        for r in load(n)["readers"]:
            if r["type"] == rtype:
                out.append(n)
                break
    return out


def boards_with(rtype):
    """(file name, config) of every shipped board with a reader of type `rtype`."""
    out = []
    for n in board_files():
        cfg = load(n)
        for r in cfg["readers"]:
            if r["type"] == rtype:
                out.append((n, cfg))
                break
    return out


class App:
    def __init__(self):
        self.taps = []
        self.errors = []  # (where, what) the reader tasks recorded
        self.sync = self  # hal.esp32 records reader failures with app.sync.error (net.sync)

    def tap(self, uid, reader=None):
        self.taps.append((bytes(uid), reader))

    def error(self, where, what):
        self.errors.append((where, what))


def build(cfg):
    import gc

    gc.collect()
    from hal.esp32 import Board

    gc.collect()
    return Board(cfg)


def check_outputs(cfg, board):
    """Every relay, LED and buzzer pin was created at its OFF level and never left it (and the
    rest of the board is built as configured): esp32_checks, a module of its own so that each
    compiles in a 64 KiB heap."""
    import esp32_checks

    esp32_checks.check_outputs(cfg, board)


def run(board, app, want=1, timeout_ms=3000, feeder=None):
    """Runs board.start(app) (plus `feeder`, a coroutine function) until app has `want` taps or
    timeout_ms passed; cancels everything. Returns how often a 10 ms heartbeat task ran."""
    from compat import asyncio, sleep_ms, ticks_diff, ticks_ms

    beats = [0]

    async def heartbeat():
        while True:
            beats[0] += 1
            await sleep_ms(10)

    async def main():
        tasks = board.start(app)
        assert len(tasks) == len(board.readers)
        tasks.append(asyncio.create_task(heartbeat()))
        if feeder is not None:
            tasks.append(asyncio.create_task(feeder()))
        t0 = ticks_ms()
        while len(app.taps) < want and ticks_diff(ticks_ms(), t0) < timeout_ms:
            await sleep_ms(10)
        for t in tasks:
            t.cancel()
        await sleep_ms(20)

    asyncio.run(main())
    return beats[0]
