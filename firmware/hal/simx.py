# Simulator parts loaded only when used (hal.sim): per-direction relays, passage sensors and a
# buzzer from board.json, and the fault-injection commands:
#   "pass <reader>"   the passage sensor of that direction sees a person (300 ms)
#   "fail reader <n>" the next n reader polls raise (the reader task re-initialises)
#   "wedge reader"    the reader task hangs (its heartbeat stops)
#   "hang"            the whole board spins (only the watchdog gets it out)
# board.json: "relays": [{"reader": "in", "pulse_ms": 500, "active_high": false}],
# "passage_sensors": [{"reader": "in"}], "buzzer": {}
from compat import emit, log, ticks_add, ticks_diff, ticks_ms

from hal.drivers import Relay
from hal.sim import Pin


class RelayPin:
    def __init__(self, reader, active_high):
        self.reader = reader
        self.on = 1 if active_high else 0
        self._v = None

    def value(self, v=None):
        if v is None:
            return self._v
        if v != self._v and self._v is not None:
            emit("relay", {"on": 1 if v == self.on else 0, "reader": self.reader})
        self._v = v


class Sensor:
    def __init__(self):
        self.until = ticks_ms()

    def value(self):
        return 1 if ticks_diff(self.until, ticks_ms()) > 0 else 0


def extend(b, cfg):
    b.relays = []
    for r in cfg.get("relays") or ():
        ah = r.get("active_high", True)
        rel = Relay(RelayPin(r.get("reader"), ah), ah)
        rel.reader = r.get("reader")
        rel.pulse_ms = r.get("pulse_ms")
        b.relays.append(rel)
    if b.relays:
        b.relay = b.relays[0]
        b.relay_for = lambda reader: ([r for r in b.relays if r.reader == reader]
                                      or [b.relay])[0]
    if cfg.get("buzzer") is not None:
        from hal.buzzer import Buzzer
        b.buzzer = Buzzer(Pin("buzzer"))
    b.sensors = {s["reader"]: Sensor() for s in cfg.get("passage_sensors") or ()}
    b.passage = lambda reader: (b.sensors[reader], True) if reader in b.sensors else None


def command(b, parts):
    cmd = parts[0]
    n = len(parts)
    if cmd == "pass" and n == 2 and parts[1] in getattr(b, "sensors", ()):
        b.sensors[parts[1]].until = ticks_add(ticks_ms(), 300)
    elif cmd == "fail" and n == 3 and parts[1] == "reader":
        b.fail = int(parts[2])
    elif cmd == "wedge" and n == 2 and parts[1] == "reader":
        b.wedged = True
    elif cmd == "hang":
        while True:
            pass
    else:
        log("unknown command:", " ".join(parts))
