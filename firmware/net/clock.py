# Board clock (invariant 4: time is untrusted). Events carry t, a synced flag, and ms since boot.
# Once the clock is synced the board reports a reference pair (t, up) of this boot in its status,
# and the cloud corrects this boot's unsynced events: t = t_ref - (up_ref - up) / 1000
# (protocol.md "Clock"). Sim: the host clock, synced per config (optionally only after
# `clock_sync_ms`). ESP32: NTP over UDP (net/ntp.py), which sets an offset, so the port's epoch
# (2000-01-01 on embedded ports) never matters.
import time

from compat import ticks_diff, ticks_ms


class Clock:
    def __init__(self, synced=False):
        self._t0 = ticks_ms()
        self.off = 0  # seconds to add to time.time() to get Unix time
        self.synced = False
        self.ref = None  # (unix t, up ms) taken when the clock became synced
        self.step = None  # seconds the clock was off at the last NTP sync (status "off")
        self.at = 0  # up ms of the last NTP sync
        self.on_sync = None  # callback() when the clock becomes synced
        if synced:
            self.set()

    def now(self):
        return int(time.time()) + self.off

    def up_ms(self):
        return ticks_diff(ticks_ms(), self._t0)

    def set(self, unix=None):
        """Mark the clock synced; with `unix` (seconds, e.g. from NTP) adjust it first."""
        if unix is not None:
            self.step = int(unix) - self.now()
            self.off += self.step
            self.at = self.up_ms()
        first = not self.synced
        self.synced = True
        self.ref = (self.now(), self.up_ms())
        if first and self.on_sync:
            self.on_sync()

    def status(self):
        if not self.synced:
            return {"synced": 0}
        s = {"synced": 1, "t": self.ref[0], "up": self.ref[1]}
        if self.step is not None:  # NTP: how far off the clock was, and when (s since boot)
            s["off"] = self.step
            s["ntp"] = self.at // 1000
        return s
