# Board clock (invariant 4: time is untrusted). Events carry t, a synced flag, and ms since boot so
# the cloud can correct unsynced times. Sim: the host clock, synced per config. ESP32: NTP later
# (and its 2000-01-01 epoch must be shifted to Unix time there).
import time

from compat import ticks_diff, ticks_ms


class Clock:
    def __init__(self, synced=False):
        self.synced = bool(synced)
        self._t0 = ticks_ms()

    def now(self):
        return int(time.time())

    def up_ms(self):
        return ticks_diff(ticks_ms(), self._t0)
