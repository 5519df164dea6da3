# What the sync case modules (test_fw_sync, test_fw_acks, test_fw_window) share: a stand-in for
# the asyncio stream a batch is rendered into, acks as the cloud sends them, a journal filled
# with taps, and running code in the board's working directory. MicroPython-compatible.
import json
import os

from net.sync import sign
from store.journal import Journal


class Stream:
    """What Sync.write_batch needs of an asyncio stream writer; keeps what was written unless
    keep=False (a growing bytes object fragments a small heap)."""

    def __init__(self, keep=True):
        self.out = b""
        self.keep = keep

    def write(self, b):
        if self.keep:
            self.out += bytes(b)

    async def drain(self):
        pass


def ack(boot, first, last, key=None, dev="gate-1"):
    """An ack payload; with `key`, the cloud's mac over it (protocol.md "Ack")."""
    a = {"v": 1, "boot": boot, "first": first, "last": last}
    if key is not None:
        a["mac"] = sign(key, b"%s|%d|%d|%d" % (dev.encode(), boot, first, last))
    return json.dumps(a).encode()


def tap(boot, seq):
    return b'{"boot":%d,"seq":%d,"kind":"tap"}' % (boot, seq)


def journal(d, n, boot=4):
    """A journal in `d` holding taps 1..n of `boot`."""
    j = Journal(d)
    for s in range(1, n + 1):
        j.append(boot, s, tap(boot, s))
    return j


def in_dir(d, fn):
    """fn() with `d` as the working directory: Sync.error writes err.log there (the board's
    flash)."""
    here = os.getcwd()
    os.chdir(d)
    try:
        return fn()
    finally:
        os.chdir(here)
