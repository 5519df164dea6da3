# Output drivers shared by every board adapter. They take pin objects (machine.Pin on the ESP32,
# a printing fake in the simulator), never pin numbers, so the same code runs on both.


class Relay:
    def __init__(self, pin, active_high=True):
        self.pin = pin
        self._on_level = 1 if active_high else 0
        self.is_on = False
        self.off()

    def on(self):
        self.pin.value(self._on_level)
        self.is_on = True

    def off(self):
        self.pin.value(1 - self._on_level)
        self.is_on = False


class Led:
    """Two-colour status LED (green = granted, red = denied). Either pin may be None."""

    def __init__(self, green=None, red=None):
        self.green = green
        self.red = red
        self.off()

    def _set(self, g, r):
        if self.green is not None:
            self.green.value(g)
        if self.red is not None:
            self.red.value(r)

    def ok(self):
        self._set(1, 0)

    def deny(self):
        self._set(0, 1)

    def off(self):
        self._set(0, 0)
