# Simulator parts loaded only when used (hal.sim): a turnstile's per-direction relays, passage
# sensors and buzzer from board.json (built at start-up, then the module is unloaded again), and
# the fault-injection commands:
#   "fail reader <n>" the next n reader polls raise (the reader task re-initialises)
#   "wedge reader"    the reader task hangs (its heartbeat stops)
#   "hang"            the whole board spins (only the watchdog gets it out)
# board.json: "relays": [{"reader": "in", "pulse_ms": 500, "active_high": false}],
# "passage_sensors": [{"reader": "in"}], "buzzer": {}
# ("pass <reader>", the passage sensor seeing a person, is a hal.sim command: it comes often.)
from compat import log

from hal.drivers import Relay
from hal.sim import Pin


def extend(b, cfg):
    rels = {}  # reader -> its relay (the first one listed for it)
    for r in cfg.get("relays") or ():
        ah = r.get("active_high", True)
        pin = Pin()
        pin.reader = r.get("reader")  # hal.sim.Pin: "@relay" lines name the direction
        pin.on = 1 if ah else 0
        rel = Relay(pin, ah)
        rel.pulse_ms = r.get("pulse_ms")
        if not rels:
            b.relay = rel
        if pin.reader not in rels:
            rels[pin.reader] = rel
    if rels:
        # A dict, not a search: Door._pulse asks on every grant and must not allocate.
        b.relay_for = lambda reader: rels.get(reader, b.relay)
    if cfg.get("buzzer") is not None:
        from hal.buzzer import Buzzer
        b.buzzer = Buzzer(Pin("buzzer"))
    if b.passage_sensors:
        sensors = b.sensors = {}
        for s in cfg["passage_sensors"]:
            sensors[s["reader"]] = Pin("sensor")
        b.passage = lambda reader: (sensors[reader], True) if reader in sensors else None


def command(b, parts):
    cmd = parts[0]
    n = len(parts)
    if cmd == "fail" and n == 3 and parts[1] == "reader":
        b.fail = int(parts[2])
    elif cmd == "wedge" and n == 2 and parts[1] == "reader":
        b.wedged = True
    elif cmd == "net":  # the simulated air (hal.simnet, the VM's `network` stand-in)
        import hal.simnet
        hal.simnet.command(parts)
    elif cmd == "hang":
        while True:
            pass
    else:
        log("unknown command:", " ".join(parts))
