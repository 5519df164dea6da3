# Output drivers shared by every board adapter: relay and status LED (the buzzer is hal.buzzer,
# card identity normalisation hal.readers, so a board without them does not load them: every
# function costs heap). They take pin objects (machine.Pin / machine.PWM on the ESP32, printing
# fakes in the simulator), never pin numbers, so the same code runs on both.


class Relay:
    """Door strike / turnstile relay. Boot-safe: the constructor drives the OFF level once and
    never the ON level, so a reset cannot pulse the door open. To avoid even the glitch between
    creating the pin and this constructor, the adapter should create the pin already at
    `Relay.off_level(active_high)` (machine.Pin(n, Pin.OUT, value=...))."""

    def __init__(self, pin, active_high=True):
        self.pin = pin
        self._on_level = 1 if active_high else 0
        self.is_on = False
        self.off()

    @staticmethod
    def off_level(active_high=True):
        return 0 if active_high else 1

    def on(self):
        self.pin.value(self._on_level)
        self.is_on = True

    def off(self):
        self.pin.value(1 - self._on_level)
        self.is_on = False


class Led:
    """Two-colour status LED (green = granted, red = denied). Either pin may be None."""

    def __init__(self, green=None, red=None, active_high=True):
        self.green = green
        self.red = red
        self._on = 1 if active_high else 0
        self.off()

    def _set(self, g, r):
        on = self._on
        if self.green is not None:
            self.green.value(on if g else 1 - on)
        if self.red is not None:
            self.red.value(on if r else 1 - on)

    def ok(self):
        self._set(1, 0)

    def deny(self):
        self._set(0, 1)

    def off(self):
        self._set(0, 0)
