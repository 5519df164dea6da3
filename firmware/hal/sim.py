# Simulator board adapter (decisions.md D5): the virtual board's control channel is stdin/stdout.
# stdin commands: "tap <uid-hex> [reader]", "stat", "quit", "override" (the canteen operator's
# button), "pass <reader>" (the passage sensor of that direction sees a person for 300 ms),
# "qr <text> [reader]" and "keys <keys> [reader]" (the QR scanner and keypad, hal.simalt); the
# turnstile parts (relays per direction, passage sensors, buzzer) and the fault injection
# ("fail reader <n>", "wedge reader", "hang") are in hal.simx, loaded only when used. A tap goes
# through a reader task like a real reader's: polled, re-initialised with backoff on errors,
# heartbeat for the supervisor. Relays print "@relay" lines; the LED prints
# human-readable lines. Everything else in firmware/ is shared with the real board.
# One Pin class for every simulated line (LEDs, relays, passage sensors): a class costs ~200
# bytes of heap, and a turnstile at 64 KiB needs them (docs/decisions.md D16).
import binascii
import sys

from compat import asyncio, emit, log, sleep_ms, ticks_add, ticks_diff, ticks_ms, unload

from hal.drivers import Led, Relay
from net.stream import Stream


class Pin:
    """A LED or buzzer line (`name`: logged when it switches), a relay (`name` None: "@relay"
    lines, with `reader` and the ON level `on` on a turnstile's per-direction relays) or, with
    `name` "sensor", a passage sensor: it reads 1 until ticks_ms() passes `_v`."""

    def __init__(self, name=None):
        self.name = name  # None: the relay
        self._v = None

    def value(self, v=None):
        if v is None:
            if self.name == "sensor":
                return 1 if self._v is not None and ticks_diff(self._v, ticks_ms()) > 0 else 0
            return self._v
        if v != self._v:
            if self.name:
                log(self.name, "on" if v else "off")
            elif self._v is not None:  # the initial "off" at start-up is not a switch
                # `reader` and `on` exist on a turnstile's relays only: no slots on other pins.
                r = getattr(self, "reader", None)
                if r is None:
                    emit("relay", {"on": v})
                else:
                    emit("relay", {"on": 1 if v == self.on else 0, "reader": r})
            self._v = v


class Board:
    name = "sim"

    def __init__(self, cfg):
        self.relay = Relay(Pin())
        self.led = Led(Pin("led green"), Pin("led red"))
        self.fail = 0  # the reader fails `fail` times in a row (hal.simx "fail reader <n>")
        self.down = False  # the reader is being re-initialised: taps are not read
        self.wedged = False
        self.passage_sensors = bool(cfg.get("passage_sensors"))  # not the dicts: heap
        if self.passage_sensors or cfg.get("relays") or cfg.get("buzzer"):
            # A turnstile's parts. hal.simx builds them and goes again: what it made stays,
            # its module dict and functions do not (heap; a door board never loads it).
            import hal.simx
            hal.simx.extend(self, cfg)
            unload("hal.simx")

    def watchdog(self, ms):
        # machine.WDT stand-in: a thread (it fires even when the event loop is stuck) prints @wdt
        # and kills the process when feed() has not been called for `ms`.
        import _thread
        import os
        import time
        self.fed = ticks_ms()

        def watch():
            while True:  # wakes up about once per timeout, not more: the GIL is shared
                d = ms - ticks_diff(ticks_ms(), self.fed)
                if d < 0:
                    break
                time.sleep_ms(d + 10)
            emit("wdt", {"timeout_ms": ms})
            open("wdt.rst", "w").close()  # the reset cause a board's machine.reset_cause() gives
            os.system("kill -9 $PPID")  # the unix port has no os._exit; a reset is abrupt too

        _thread.start_new_thread(watch, ())
        return self

    def feed(self):
        self.fed = ticks_ms()

    def start(self, app):
        tasks = [asyncio.create_task(self._stdin(app))]
        if not getattr(app, "safe_mode", False):
            tasks.append(asyncio.create_task(self._reader(app)))
        return tasks

    async def _reader(self, app):
        # The reader task, as on the board: polls the (simulated) chip, re-initialises it with
        # backoff on errors (counted, no reboot) and beats for the supervisor. Taps typed on stdin
        # are decided at once (the simulator's bursts must not queue up in a 100 KiB heap), unless
        # the reader is down.
        sup = getattr(app, "sup", None)
        back = 500
        while True:
            if sup:
                sup.beat("reader")
            if self.wedged:
                await asyncio.Event().wait()  # never set: the task is stuck
            if not self.fail:
                self.down = False
                back = 500
                await sleep_ms(200)
                continue
            self.fail -= 1
            self.down = True
            log("reader", "reinit", back)  # no answer: re-init in `back` ms
            app.sync.error("reader", "reinit")
            if sup:
                sup.reinit("sim")
            wait = back
            back = min(back * 2, 8000)
            while wait > 0:  # backing off is alive: keep beating
                await sleep_ms(min(wait, 1000))
                wait -= 1000
                if sup:
                    sup.beat("reader")

    async def _stdin(self, app):
        reader = Stream(sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                app.quit()  # stdin EOF: the simulator went away
                return
            parts = line.decode().split()
            if not parts:
                continue
            cmd = parts[0]
            if cmd == "tap" and 2 <= len(parts) <= 3:
                try:
                    uid = binascii.unhexlify(parts[1])
                except ValueError:
                    log("uid", "ValueError", parts[1])
                    continue
                if getattr(app, "safe_mode", False):
                    emit("ignored", {"why": "safe_mode"})
                elif self.down or self.wedged:
                    emit("ignored", {"why": "reader_down"})
                else:
                    try:
                        app.tap(uid, parts[2] if len(parts) == 3 else None)
                    except Exception as e:  # keep the control channel alive whatever happens
                        log("tap", repr(e))
            elif cmd == "stat":
                app.stat()
                if hasattr(app, "sup"):
                    emit("sup", app.sup.info())
            elif cmd == "quit":
                app.quit()
                return
            elif cmd == "override":  # the canteen operator's override button
                app.override()
            elif cmd == "pass" and len(parts) == 2 and parts[1] in getattr(self, "sensors", ()):
                self.sensors[parts[1]]._v = ticks_add(ticks_ms(), 300)
            elif cmd in ("qr", "keys") and 2 <= len(parts) <= 3 and not self.down:
                import hal.simalt  # the QR scanner and the keypad (D29-J)
                try:
                    hal.simalt.command(app, parts)
                except Exception as e:  # keep the control channel alive whatever happens
                    log("altid", repr(e))
            else:
                import hal.simx
                hal.simx.command(self, parts)
