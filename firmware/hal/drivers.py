# Output drivers shared by every board adapter, and card identity normalisation. They take pin
# objects (machine.Pin / machine.PWM on the ESP32, printing fakes in the simulator), never pin
# numbers, so the same code runs on both.
from compat import sleep_ms


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


class Buzzer:
    """`out`: a PWM-like object (duty_u16) driving a passive buzzer, or a Pin driving an active
    one. Patterns are (on_ms, off_ms, on_ms, ...) played by `await play(pattern)`; the buzzer is
    silent whatever happens to the task (finally)."""

    OK = (80,)
    DENY = (150, 100, 150)
    ALARM = (400, 200, 400, 200, 400)

    def __init__(self, out, active_high=True, freq=2700, duty_u16=32768, sleep=None):
        self.out = out
        self._pwm = hasattr(out, "duty_u16")
        self._on = 1 if active_high else 0
        self._duty = duty_u16
        self._sleep = sleep or sleep_ms
        self.playing = False
        if self._pwm and freq and hasattr(out, "freq"):
            out.freq(freq)
        self.off()

    def on(self):
        if self._pwm:
            self.out.duty_u16(self._duty)
        else:
            self.out.value(self._on)

    def off(self):
        if self._pwm:
            self.out.duty_u16(0)
        else:
            self.out.value(1 - self._on)

    async def play(self, pattern):
        self.playing = True
        try:
            for i in range(len(pattern)):
                if i & 1:
                    self.off()
                else:
                    self.on()
                await self._sleep(pattern[i])
        finally:
            self.off()
            self.playing = False


# Card identity. The whitelist is keyed by card_key(secret, uid) (store.cardkey), so the same
# physical card must give the same uid bytes through every reader type of a deployment:
# - MFRC522 / PN532 (ISO/IEC 14443 A): the UID as the card sends it in anticollision, 4, 7 or
#   10 bytes, cascade tags removed, UID0 first. Nothing to normalise.
# - Wiegand: the reader decides what it sends. Only the data bits between the parity bits exist,
#   so the uid is those bytes MSB first: 4 bytes for Wiegand 34, 3 for Wiegand 26.
# What a deployment must configure: Wiegand readers set to "Wiegand 34, output the 4-byte UID"
# so the key equals the 4 UID bytes an MFRC522/PN532 reads; readers that send the UID
# byte-reversed need `wiegand_reverse` in the board config. Wiegand 26 carries 24 bits only: its
# keys never match a 14443 reader's, so cards used on W26 readers are enrolled through one. 7- and
# 10-byte UIDs (NTAG, DESFire) cannot be carried whole by W26/W34 at all; such readers must be
# enrolled separately (or configured to a longer format, not supported here).


def normalise_uid(kind, data, reverse=False):
    """Bytes to key the card on. `kind`: "mfrc522", "pn532", "iso14443a" or "wiegand".
    `data`: the UID bytes, or for Wiegand the raw bytes from hal.wiegand (3 or 4 bytes);
    `reverse`: the Wiegand reader sends the UID LSB first. Raises ValueError."""
    n = len(data)
    if kind == "wiegand" and n in (3, 4):
        if reverse:  # no step slicing in MicroPython
            return bytes(data[n - 1 - i] for i in range(n))
        return bytes(data)
    if kind in ("mfrc522", "pn532", "iso14443a") and n in (4, 7, 10):
        return bytes(data)
    raise ValueError("bad uid for reader kind")
