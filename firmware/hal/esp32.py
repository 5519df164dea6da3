# ESP32 board adapter. The wiring comes from board.json (docs/board-configs.md, schema in
# board-configs/schema.json) so one firmware image serves every supported board: `buses` become
# machine.SPI / machine.I2C objects, each `readers[]` entry a driver front-end (hal.readers) polled
# by its own asyncio task, `relays[]` drivers.Relay objects, `leds` a drivers.Led, `buzzer` a
# hal.buzzer.Buzzer (PWM when `freq_hz` is given), `passage_sensors` input pins. Drivers are imported
# only for the reader types (and the buzzer) the board has.
import machine

from compat import asyncio, log, sleep_ms
from hal.drivers import Led, Relay

Pin = machine.Pin


def _out(n, level):
    # value= sets the output latch before the pin becomes an output: no glitch at boot.
    return Pin(n, Pin.OUT, value=level)


class _NoPin:
    """Stands in for an output a board does not have (a canteen board has no relay)."""

    def value(self, v=None):
        return 0


class _Oled:
    def __init__(self, d):
        self.d = d

    def show(self, l1, l2):
        d = self.d
        d.fill(0)
        d.text(l1[:16], 0, 0)
        d.text(l2[:16], 0, 12)
        d.show()


class Board:
    name = "esp32"

    def __init__(self, cfg):
        self.cfg = cfg
        self._buses = {}
        self.relays = []
        for r in cfg.get("relays") or ():
            ah = r.get("active_high", True)
            rel = Relay(_out(r["pin"], Relay.off_level(ah)), ah)
            rel.reader = r.get("reader")  # None: serves every reader (door)
            rel.pulse_ms = r.get("pulse_ms", 300)
            self.relays.append(rel)
        self.relay = self.relays[0] if self.relays else Relay(_NoPin())
        ld = cfg.get("leds") or {}
        ah = ld.get("active_high", True)
        off = 0 if ah else 1
        g, r = ld.get("green"), ld.get("red")
        self.led = Led(None if g is None else _out(g, off), None if r is None else _out(r, off), ah)
        self.buzzer = None
        bz = cfg.get("buzzer")
        if bz:
            ah = bz.get("active_high", True)
            out = _out(bz["pin"], 0 if ah else 1)
            f = bz.get("freq_hz")
            if f:  # passive buzzer: PWM, created silent
                out = machine.PWM(out, freq=f, duty_u16=0)
            from hal.buzzer import Buzzer
            self.buzzer = Buzzer(out, ah, freq=f or 2700)
        self.passage_sensors = []  # (reader, pin, active_high)
        for s in cfg.get("passage_sensors") or ():
            pull = {"up": Pin.PULL_UP, "down": Pin.PULL_DOWN}.get(s.get("pull"))
            self.passage_sensors.append((s["reader"], Pin(s["pin"], Pin.IN, pull),
                                         s.get("active_high", True)))
        self.readers = [self._reader(rc) for rc in cfg.get("readers") or ()]
        qs = cfg.get("qr_scanners")
        if qs:  # alternative identification (hal.altreaders, D29-J)
            import hal.altreaders
            self.readers += [hal.altreaders.make(q, Pin, machine) for q in qs]
        # Canteen counter (app.canteen): board.json "display": {"type": "ssd1306", "bus": NAME,
        # "address": 60, "width": 128, "height": 32} (needs the ssd1306 module; without it the
        # lines go to the log) and "override_button": {"pin": N, "active_high": false}.
        self.display = None
        dc = cfg.get("display")
        if dc and dc.get("type") == "ssd1306":
            try:
                import ssd1306
                self.display = _Oled(ssd1306.SSD1306_I2C(dc.get("width", 128),
                                                         dc.get("height", 32), self._bus(dc["bus"]),
                                                         addr=dc.get("address", 0x3C)))
            except Exception as e:
                log("display:", repr(e))
        ob = cfg.get("override_button")
        self.button = None if not ob else (Pin(ob["pin"], Pin.IN, Pin.PULL_UP),
                                          ob.get("active_high", False))

    def relay_for(self, reader):
        """The relay releasing `reader`'s direction (turnstile), else the board's first relay."""
        for rel in self.relays:
            if rel.reader == reader:
                return rel
        return self.relay

    def passage(self, reader):
        """(pin, active_high) of `reader`'s passage sensor, or None (app.turnstile)."""
        for r, pin, ah in self.passage_sensors:
            if r == reader:
                return pin, ah
        return None

    def watchdog(self, ms):
        return machine.WDT(timeout=ms)  # app.supervisor feeds it; cannot be stopped

    # -- buses and readers ---------------------------------------------------------------------
    def _bus(self, name):
        b = self._buses.get(name)
        if b is None:
            c = self.cfg["buses"][name]
            if c["type"] == "spi":
                b = machine.SPI(c.get("id", 2), baudrate=c.get("baudrate", 1000000), polarity=0,
                                phase=0, sck=Pin(c["sck"]), mosi=Pin(c["mosi"]), miso=Pin(c["miso"]))
            else:
                b = machine.I2C(c.get("id", 0), scl=Pin(c["scl"]), sda=Pin(c["sda"]),
                                freq=c.get("freq", 400000))
            self._buses[name] = b
        return b

    def _reader(self, rc):
        t = rc["type"]
        p = rc.get("pins") or {}
        name = rc["reader"]
        if t == "mfrc522":
            from hal.readers import MFRC522Reader

            if p.get("rst") is not None:
                _out(p["rst"], 1)  # NRSTPD high: chip running (the driver soft-resets it)
            irq = p.get("irq")
            return MFRC522Reader(name, self._bus(rc["bus"]), _out(p["cs"], 1),
                                 None if irq is None else Pin(irq, Pin.IN))
        if t == "pn532":
            from hal.readers import PN532Reader

            if p.get("reset") is not None:
                _out(p["reset"], 1)  # RSTPDN high: chip running
            return PN532Reader(name, self._bus(rc["bus"]), rc.get("address", 0x24))
        if t in ("wiegand26", "wiegand34") and rc.get("keypad"):
            import hal.altreaders  # its key frames are a PIN entry (D29-J)
            return hal.altreaders.make(rc, Pin, machine)
        if t in ("wiegand26", "wiegand34"):
            from hal.readers import WiegandReader

            # Wiegand lines need external pull-ups (level shifter; GPIO 34-39 have none).
            return WiegandReader(name, 26 if t == "wiegand26" else 34, Pin(p["d0"], Pin.IN),
                                 Pin(p["d1"], Pin.IN))
        raise ValueError("unknown reader type " + t)

    # -- tasks ---------------------------------------------------------------------------------
    def start(self, app):
        if getattr(app, "safe_mode", False):  # app.supervisor: network and commands only
            return []
        t = [asyncio.create_task(self._poll(rd, app)) for rd in self.readers]
        if self.button:
            t.append(asyncio.create_task(self._button(app)))
        return t

    async def _button(self, app):
        pin, ah = self.button
        was = 0
        while True:
            v = 1 if pin.value() == (1 if ah else 0) else 0
            if v and not was:
                app.override()
            was = v
            await sleep_ms(50)

    async def _init(self, rd, sup, err):
        wait = 1000
        while True:
            try:
                rd.init()
                log("reader", rd.name, rd.kind, "ready")
                return
            except Exception as e:  # chip absent or not answering: retry, the board still syncs
                log("reader", rd.name, rd.kind, "init failed:", repr(e))
                if err:
                    err(rd.name, e)
            for _ in range(wait // 1000):  # backing off is alive: keep the heartbeat
                if sup:
                    sup.beat(rd.name)
                await sleep_ms(1000)
            wait = min(wait * 2, 30000)

    async def _poll(self, rd, app):
        sup = getattr(app, "sup", None)  # app.supervisor: heartbeat, re-init count
        # net.sync's last errors (the status "err"): failures here and the frames the driver
        # rejected without raising (its counters, _bad()).
        err = getattr(getattr(app, "sync", None), "error", None)
        await self._init(rd, sup, err)
        errors = 0
        bad = _bad(rd)
        while True:
            if sup:
                sup.beat(rd.name)
            uid = None
            try:
                uid = rd.poll()
                errors = 0
            except Exception as e:
                errors += 1
                if errors == 1:
                    log("reader", rd.name, "poll failed:", repr(e))
                    if err:
                        err(rd.name, e)
                if errors >= 20:  # persistently failing: the chip may have reset, set it up again
                    errors = 0
                    if sup:
                        sup.reinit(rd.name)
                    if err:
                        err(rd.name, "reinit")
                    await self._init(rd, sup, err)
            n = _bad(rd)
            if n != bad:
                bad = n
                if err:  # the MFRC522's ErrorReg of the last one, 00 for the others
                    err(rd.name, "%s frame %02x" % (rd.kind, getattr(rd.drv, "last_error", 0)))
            if uid is not None:
                try:
                    if hasattr(rd, "deliver"):  # a QR scanner or keypad (hal.altreaders)
                        rd.deliver(app, uid)
                    else:
                        app.tap(uid, rd.name)
                except Exception as e:  # never let one tap kill the reader task
                    log("tap failed:", repr(e))
                    if err:
                        err("tap", e)
            await sleep_ms(rd.period_ms)


def _bad(rd):
    """Frames the reader's driver rejected without raising: MFRC522 and PN532 `errors` (RF
    noise, a chip in trouble), Wiegand parity and length errors and frames of the other format
    (a misconfigured reader)."""
    d = rd.drv
    return (getattr(d, "errors", 0) + getattr(d, "bad_parity", 0) + getattr(d, "bad_length", 0)
            + getattr(rd, "wrong_format", 0))
