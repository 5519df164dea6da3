# Buzzer driver (board.json "buzzer"), loaded only by a board that has one. Takes a pin object,
# as hal.drivers does.
from compat import sleep_ms


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
