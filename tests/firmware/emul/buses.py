# Bus-level test doubles shared by the chip emulators: a virtual clock, Pin-like objects and an
# SPI-like bus that streams bytes to a device model and counts chip-select transactions.
# Runs under CPython and the MicroPython unix port (no typing, dataclasses or f-string tricks).


class Clock:
    """Virtual time in microseconds. Drivers get `sleep_us`/`sleep_ms`/`ticks_ms` from here, so
    time only passes when the code under test waits; listeners run after every advance (that is
    where an emulated chip raises its IRQ line, as if it happened during the sleep)."""

    def __init__(self):
        self.now_us = 0
        self.listeners = []
        self.slept_us = 0

    def sleep_us(self, us):
        self.now_us += us
        self.slept_us += us
        for f in self.listeners:
            f()

    def sleep_ms(self, ms):
        self.sleep_us(ms * 1000)

    def ticks_ms(self):
        return self.now_us // 1000

    def ticks_us(self):
        return self.now_us


class Pin:
    """machine.Pin-like: value() records every write, irq() stores the handler, and drive()
    changes the input level firing the handler on the configured edge."""

    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, value=None):
        self._v = value
        self.writes = []
        self.handler = None
        self.trigger = 0

    def value(self, v=None):
        if v is None:
            return self._v
        self.writes.append(v)
        self._v = v

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=IRQ_FALLING):
        self.handler = handler
        self.trigger = trigger

    def drive(self, level):
        old = self._v
        self._v = level
        if self.handler is None or old == level or old is None:
            return
        if (level == 0 and self.trigger & self.IRQ_FALLING) or (
            level == 1 and self.trigger & self.IRQ_RISING
        ):
            self.handler(self)


class PWM:
    """machine.PWM-like (duty_u16/freq) that records duty changes."""

    def __init__(self):
        self.duties = []
        self.f = 0

    def duty_u16(self, d=None):
        if d is None:
            return self.duties[-1] if self.duties else 0
        self.duties.append(d)

    def freq(self, f=None):
        if f is None:
            return self.f
        self.f = f


class CS(Pin):
    def __init__(self, bus):
        Pin.__init__(self, 1)
        self.bus = bus

    def value(self, v=None):
        if v is None:
            return self._v
        if v == 0 and self._v != 0:
            self.bus.begin()
        elif v == 1 and self._v == 0:
            self.bus.end()
        self._v = v


class SPIBus:
    """machine.SPI-like. `device` has begin(), byte(mosi) -> miso and end(). Counts transfers
    (chip-select windows) and bytes; `us_per_transfer` advances the clock per transaction."""

    def __init__(self, device, clock=None, us_per_transfer=5):
        self.device = device
        self.clock = clock
        self.us = us_per_transfer
        self.cs = CS(self)
        self.transfers = 0
        self.nbytes = 0
        self._open = False

    def begin(self):
        self._open = True
        self.device.begin()

    def end(self):
        self._open = False
        self.transfers += 1
        self.device.end()
        if self.clock is not None:
            self.clock.sleep_us(self.us)

    def _xfer(self, b):
        if not self._open:
            raise OSError("SPI transfer with CS high")
        self.nbytes += 1
        return self.device.byte(b)

    def write(self, buf):
        for b in buf:
            self._xfer(b)

    def readinto(self, buf, write=0):
        for i in range(len(buf)):
            buf[i] = self._xfer(write)

    def write_readinto(self, tx, rx):
        for i in range(len(tx)):
            rx[i] = self._xfer(tx[i])
