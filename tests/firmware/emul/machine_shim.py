# Test-only stand-in for MicroPython's `machine` module, backed by the bus emulators: install it
# with `sys.modules["machine"] = machine_shim` before importing hal.esp32 (works under CPython
# and the MicroPython unix port, whose own `machine` has no Pin/SPI/I2C).
#
# A test wires emulated devices to GPIO numbers and buses first (wire_pin, wire_spi, wire_i2c),
# then builds the board: every machine.Pin(n, ...) the adapter creates is registered in `pins`
# and forwards to the emulator pin wired to n, if any. Each shim Pin remembers the level it was
# created with (`first`) and which levels it was ever driven to (`seen`: bit 0 = low, bit 1 =
# high), in constant memory, so boot-safety can be asserted. An output created without value=
# starts low, as an ESP32 GPIO does: that is the glitch a boot-safe relay must avoid.
# RealClock gives the emulators real time, so the drivers run with their default sleeps.
import time

pins = {}  # GPIO -> shim Pin created by the code under test
_wired = {}  # GPIO -> emulator pin object (value(), irq())
_spi = []  # emulator SPI buses (buses.SPIBus); the one whose CS is low gets the bytes
_i2c = {}  # 7-bit address -> emulator device (writeto, readfrom_into)
_uart = {}  # RX GPIO -> UART-level emulator (any, readinto, write)
uarts = []
spis = []
i2cs = []
pwms = []


def reset():
    pins.clear()
    _wired.clear()
    del _spi[:]
    _i2c.clear()
    _uart.clear()
    del uarts[:]
    del spis[:]
    del i2cs[:]
    del pwms[:]


def wire_pin(n, target):
    _wired[n] = target


def wire_spi(bus):
    _spi.append(bus)


def wire_i2c(dev):
    _i2c[dev.addr] = dev


def wire_uart(rx, dev):
    # a UART-level device (qrscan_emu.ScannerUART) whose output reaches the board's RX pin rx
    _uart[rx] = dev


def disable_irq():
    return 0


def enable_irq(state):
    pass


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        if id in pins:
            raise ValueError(f"GPIO {id} configured twice")
        pins[id] = self
        self.id = id
        self.mode = mode
        self.pull = pull
        self.target = _wired.get(id)
        self.handler = None
        self.first = None
        self.seen = 0
        self._v = None
        if mode == Pin.OUT:
            self._drive(0 if value is None else value)
        elif value is not None:
            self._v = 1 if value else 0  # latched, not driven (an input)

    def _drive(self, v):
        v = 1 if v else 0
        if self.first is None:
            self.first = v
        self.seen |= 1 << v
        self._v = v
        if self.target is not None:
            self.target.value(v)

    def value(self, v=None):
        if v is None:
            return self.target.value() if self.target is not None else self._v
        self._drive(v)

    def irq(self, handler=None, trigger=IRQ_FALLING):
        self.handler = handler
        if self.target is not None:
            self.target.irq(handler=handler, trigger=trigger)


class PWM:
    def __init__(self, pin, freq=None, duty_u16=None):
        self.pin = pin
        self.f = freq
        self.first = duty_u16
        self.max_duty = duty_u16 or 0
        pwms.append(self)

    def freq(self, f):
        self.f = f

    def duty_u16(self, d):
        if self.first is None:
            self.first = d
        self.max_duty = max(self.max_duty, d)


class SPI:
    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, sck=None, mosi=None, miso=None):
        self.id = id
        self.baudrate = baudrate
        spis.append(self)

    def _dev(self):
        for b in _spi:
            if b._open:
                return b
        return None  # nobody selected: MISO floats high

    def write(self, buf):
        d = self._dev()
        if d is not None:
            d.write(buf)

    def write_readinto(self, tx, rx):
        d = self._dev()
        if d is not None:
            d.write_readinto(tx, rx)
        else:
            for i in range(len(rx)):
                rx[i] = 0xFF


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000):
        self.id = id
        self.freq = freq
        i2cs.append(self)

    def _dev(self, addr):
        d = _i2c.get(addr)
        if d is None:
            raise OSError(19)  # ENODEV: address not acknowledged
        return d

    def writeto(self, addr, buf, stop=True):
        return self._dev(addr).writeto(addr, buf)

    def readfrom_into(self, addr, buf, stop=True):
        return self._dev(addr).readfrom_into(addr, buf)


class RealClock:
    """buses.Clock interface on real time: the drivers' own sleeps move the emulators on."""

    def __init__(self):
        self.listeners = []
        self._t0 = time.ticks_us() if _MP else time.monotonic_ns() // 1000

    @property
    def now_us(self):
        if _MP:
            return time.ticks_diff(time.ticks_us(), self._t0)
        return time.monotonic_ns() // 1000 - self._t0

    def sleep_us(self, us):
        time.sleep(us / 1000000)
        for f in self.listeners:
            f()


_MP = hasattr(time, "ticks_us")


class UART:
    """machine.UART's receive side and write(), on the device wired to the RX pin (wire_uart)."""

    def __init__(self, id, baudrate=9600, tx=None, rx=None, rxbuf=256):
        self.id = id
        self.baudrate = baudrate
        self.dev = _uart[rx.id]
        uarts.append(self)

    def any(self):
        return self.dev.any()

    def readinto(self, buf, nbytes=None):
        return self.dev.readinto(buf, nbytes)

    def write(self, data):
        return self.dev.write(data)

