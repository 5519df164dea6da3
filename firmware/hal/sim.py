# Simulator board adapter (decisions.md D5): the virtual board's control channel is stdin/stdout.
# stdin commands: "tap <uid-hex> [reader]", "stat", "quit". The relay prints "@relay" lines; the
# LED prints human-readable lines. Everything else in firmware/ is shared with the real board.
import binascii
import sys

from compat import asyncio, emit, log
from hal.drivers import Led, Relay


class RelayPin:
    def __init__(self):
        self._v = None

    def value(self, v=None):
        if v is None:
            return self._v
        if v != self._v:
            if self._v is not None:  # the initial "off" at start-up is not a switch
                emit("relay", {"on": v})
            self._v = v


class LedPin:
    def __init__(self, name):
        self.name = name
        self._v = 0

    def value(self, v=None):
        if v is None:
            return self._v
        if v != self._v:
            self._v = v
            log("led", self.name, "on" if v else "off")


class Board:
    name = "sim"

    def __init__(self, cfg):
        self.cfg = cfg
        self.relay = Relay(RelayPin())
        self.led = Led(LedPin("green"), LedPin("red"))

    def start(self, app):
        return [asyncio.create_task(self._stdin(app))]

    async def _stdin(self, app):
        reader = asyncio.StreamReader(sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                app.quit()  # stdin EOF: the simulator went away
                return
            parts = line.decode().split()
            if not parts:
                continue
            cmd = parts[0]
            if cmd == "tap" and len(parts) in (2, 3):
                try:
                    uid = binascii.unhexlify(parts[1])
                except ValueError:
                    log("bad uid hex:", parts[1])
                    continue
                try:
                    app.tap(uid, parts[2] if len(parts) == 3 else None)
                except Exception as e:  # keep the control channel alive whatever happens
                    log("tap failed:", repr(e))
            elif cmd == "stat":
                app.stat()
            elif cmd == "quit":
                app.quit()
                return
            else:
                log("unknown command:", line.decode().strip())
