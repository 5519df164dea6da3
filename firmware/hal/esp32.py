# ESP32 board adapter. Pins come from board.json so one firmware image serves every supported
# board; the drivers get machine.Pin objects. Card reader drivers (MFRC522/PN532/Wiegand) come in a
# later issue: until then the reader task logs and exits and the board only syncs.
import machine

from compat import asyncio, log
from hal.drivers import Led, Relay


def _pin(n):
    return None if n is None else machine.Pin(n, machine.Pin.OUT)


class Reader:
    """Placeholder: a real driver polls the bus and calls app.tap(uid_bytes, reader_name)."""

    def __init__(self, bus=None, name="in"):
        self.bus = bus
        self.name = name

    async def run(self, app):
        raise NotImplementedError("card reader driver not written yet")


class Board:
    name = "esp32"

    def __init__(self, cfg):
        self.cfg = cfg
        self.relay = Relay(_pin(cfg.get("relay_pin", 26)), cfg.get("relay_active_high", True))
        self.led = Led(_pin(cfg.get("led_green_pin")), _pin(cfg.get("led_red_pin")))
        self.readers = [Reader(None, "in")]

    def start(self, app):
        return [asyncio.create_task(self._guard(r, app)) for r in self.readers]

    async def _guard(self, reader, app):
        try:
            await reader.run(app)
        except NotImplementedError as e:
            log("reader", reader.name, "disabled:", e)
