# The board's last errors (net.sync Sync.error; protocol.md "Status", key "err"): at most 3
# entries [up s, where, what, n], oldest first, a repeat of the newest one counted in place, the
# list never growing past its preallocated room; published in the status at once; each new entry
# appended to err.log in the flash, rotated to err.old past 1 KiB. CPython and the MicroPython VM.
import json
import os

from fwhelpers import read, rmtree, tempdir
from net.sync import Sync
from store.journal import Journal


class _Clock:
    def __init__(self):
        self.ms = 0

    def up_ms(self):
        return self.ms

    def status(self):
        return {"synced": 0}


def _sync(d, clock):
    return Sync(Journal(d + "/fl"), "gate-1", "p", status={"boot": 7, "wl": 3}, clock=clock)


def _in(d, fn):
    # The firmware writes err.log into its working directory (the board's flash).
    here = os.getcwd()
    os.chdir(d)
    try:
        fn()
    finally:
        os.chdir(here)


def test_the_last_three_errors_oldest_first_with_repeats_counted():
    d = tempdir()
    os.mkdir(d + "/fl")
    clk = _Clock()
    sy = _sync(d, clk)

    def body():
        assert sy.err == [] and json.loads(sy.status_payload())["err"] == []
        clk.ms = 12345
        sy.error("link", OSError(113))
        assert sy.err == [[12, "link", "OSError 113", 1]] and sy.hb  # published at once
        sy.hb = False
        clk.ms = 20999
        sy.error("link", OSError(113))  # the same again: counted, its time moved
        assert sy.err == [[20, "link", "OSError 113", 2]] and not sy.hb
        sy.error("wl", "crc")
        sy.error("link", OSError(113))  # not the newest: a new entry
        sy.error("batch", MemoryError())
        assert sy.err == [
            [20, "wl", "crc", 1],
            [20, "link", "OSError 113", 1],
            [20, "batch", "MemoryError", 1],
        ], sy.err
        clk.ms = 31000
        sy.error("ack", "timeout")  # the oldest goes
        assert [e[1] for e in sy.err] == ["link", "batch", "ack"], sy.err
        st = json.loads(sy.status_payload())
        assert st["err"] == sy.err and st["boot"] == 7 and st["wl"] == 3, st
        sy.error("x", 5)  # not a reason, not an exception: ignored, never raises
        assert len(sy.err) == 3 and sy.err[-1][1] == "ack"
        sy.on_down()  # a dropped connection is one too
        assert sy.err[-1] == [31, "link", "down", 1], sy.err

    try:
        _in(d, body)
        lines = read(d + "/err.log").decode().split("\n")
        assert lines == [
            "7 12 link OSError 113",
            "7 20 wl crc",
            "7 20 link OSError 113",
            "7 20 batch MemoryError",
            "7 31 ack timeout",
            "7 31 link down",
            "",
        ], lines  # a repeat is not written again
    finally:
        rmtree(d)


def test_err_log_is_rotated_and_never_takes_more_than_about_two_kib():
    d = tempdir()
    os.mkdir(d + "/fl")
    clk = _Clock()
    sy = _sync(d, clk)

    def body():
        for i in range(150):
            clk.ms = i * 1000
            sy.error("reader", "reinit" if i % 2 else "OSError 19")

    try:
        _in(d, body)
        old = read(d + "/err.old").decode()
        new = read(d + "/err.log").decode()
        assert len(old) <= 1100 and len(new) <= 1100, (len(old), len(new))
        assert (old + new).split("\n")[-2] == "7 149 reader reinit"  # the newest is kept
        tail = (old + new).split("\n")[:-1]
        assert tail[-3:] == [
            "7 147 reader reinit",
            "7 148 reader OSError 19",
            "7 149 reader reinit",
        ], tail[-3:]
        assert len(sy.err) == 3
    finally:
        rmtree(d)
