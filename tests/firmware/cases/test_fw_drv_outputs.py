# Relay, LED (hal.drivers) and buzzer (hal.buzzer) drivers with recording pins.
# CPython and MicroPython VM.
import sys

for _p in list(sys.path):
    if _p.endswith("cases") and _p + "/../emul" not in sys.path:
        sys.path.append(_p + "/../emul")

from buses import PWM, Pin  # noqa: E402
from compat import asyncio  # noqa: E402
from hal.buzzer import Buzzer  # noqa: E402
from hal.drivers import Led, Relay  # noqa: E402


def test_relay_boot_safe_active_high():
    pin = Pin()
    r = Relay(pin)
    assert pin.writes == [0] and not r.is_on  # OFF applied once, ON never touched
    r.on()
    assert pin.value() == 1 and r.is_on
    r.off()
    assert pin.value() == 0


def test_relay_boot_safe_active_low():
    pin = Pin()
    r = Relay(pin, active_high=False)
    assert pin.writes == [1] and not r.is_on  # no pulse through the ON (0) level
    r.on()
    assert pin.writes == [1, 0]
    r.off()
    assert pin.writes == [1, 0, 1]
    assert Relay.off_level(False) == 1 and Relay.off_level(True) == 0


def test_led_levels():
    g, r = Pin(), Pin()
    led = Led(g, r)
    led.ok()
    assert (g.value(), r.value()) == (1, 0)
    led.deny()
    assert (g.value(), r.value()) == (0, 1)
    g2 = Pin()
    led2 = Led(g2, None, active_high=False)  # red missing: fine
    assert g2.writes == [1]
    led2.ok()
    assert g2.value() == 0


def _no_wait_sleep(log):
    async def sleep(ms):
        log.append(ms)

    return sleep


def test_buzzer_pwm_pattern():
    pwm = PWM()
    slept = []
    bz = Buzzer(pwm, freq=2000, sleep=_no_wait_sleep(slept))
    assert pwm.f == 2000 and pwm.duties == [0]
    asyncio.run(bz.play((100, 50, 100)))
    assert pwm.duties == [0, 32768, 0, 32768, 0]
    assert slept == [100, 50, 100] and not bz.playing


def test_buzzer_pin_active_low_silent_on_cancel():
    pin = Pin()
    slept = []

    async def boom(ms):
        slept.append(ms)
        raise ValueError("cancelled")

    bz = Buzzer(pin, active_high=False, sleep=boom)
    assert pin.writes == [1]
    try:
        asyncio.run(bz.play(Buzzer.DENY))
    except ValueError:
        pass
    assert pin.writes == [1, 0, 1] and pin.value() == 1  # silent afterwards
    assert slept == [150]
