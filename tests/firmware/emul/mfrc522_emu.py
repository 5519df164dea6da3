# Register-level MFRC522 emulator behind an SPI-like bus, with ISO/IEC 14443-3 type A cards.
# Enough of the chip for hal.mfrc522: SPI byte protocol, register file, 64-byte FIFO, commands
# Idle/CalcCRC/Transceive/SoftReset, ComIrq/DivIrq/Error/Coll registers, the TAuto timer
# (TimerIRq when nobody answers), bit-oriented frames (TxLastBits/RxAlign/RxLastBits), bitwise
# collisions between several cards, error injection and an IRQ output pin.
#
# CalcCRC as in the NXP MFRC522 datasheet (rev 3.9, 10.3.1.4): the command loads the CRCPreset
# and takes the FIFO's bytes into the CRC coprocessor; it is not limited to a number of bytes and
# does not stop when the FIFO runs empty: every byte written to the FIFO while CalcCRC is the
# active command is consumed and added, until another command is written to CommandReg (Idle,
# Transceive, CalcCRC again: that one starts over from the preset).
from buses import Pin, SPIBus
from iso14443a import Card, crc_a  # noqa: F401  (re-exported for the tests)

_PRESETS = (0x0000, 0x6363, 0xA671, 0xFFFF)  # ModeReg CRCPreset
_BIT_US = 9.44  # one bit at 106 kbit/s (128 / fc)
_FDT_US = 86  # PICC frame delay time 1172 / fc


class MFRC522Chip:
    """The chip. Wire the driver to `self.spi` / `self.cs` (and `self.irq` if wanted)."""

    def __init__(self, clock, cards=None):
        self.clock = clock
        clock.listeners.append(self._update)
        self.bus = SPIBus(self, clock)
        self.spi = self.bus
        self.cs = self.bus.cs
        self.irq = Pin(1)
        self.cards = list(cards or [])
        self.inject = 0  # ErrorReg bits for the next card answer
        self.timer_broken = False  # TimerIRq never fires (a chip that stopped working)
        self.log = []  # (command, frame bytes) sent over the air
        self._reset()

    # -- SPI byte protocol ----------------------------------------------------------------
    def begin(self):
        self._first = True
        self._addr = None

    def end(self):
        self._update()

    def byte(self, mosi):
        if self._first:
            self._first = False
            self._read = bool(mosi & 0x80)
            self._addr = (mosi >> 1) & 0x3F
            return 0
        if self._read:
            out = self.read(self._addr)
            self._addr = (mosi >> 1) & 0x3F
            return out
        self.write(self._addr, mosi)
        return 0

    # -- register file --------------------------------------------------------------------
    def _reset(self):
        r = bytearray(64)
        r[0x01], r[0x02], r[0x04], r[0x07], r[0x0B] = 0x20, 0x80, 0x14, 0x21, 0x08
        r[0x0C], r[0x0E], r[0x11], r[0x14], r[0x37] = 0x10, 0xA0, 0x3F, 0x80, 0x92
        self.r = r
        self.fifo = bytearray()
        self._event = None  # (time_us, function)
        self._crc = 0  # running CRC of the active CalcCRC command

    def read(self, a):
        self._update()
        if a == 0x09:
            if not self.fifo:
                return 0
            v = self.fifo[0]
            self.fifo = self.fifo[1:]
            return v
        if a == 0x0A:
            return len(self.fifo)
        return self.r[a]

    def write(self, a, v):
        self._update()
        r = self.r
        if a == 0x09:
            if len(self.fifo) >= 64:
                r[0x06] |= 0x10  # BufferOvfl
            else:
                self.fifo.append(v)
                if r[0x01] & 0x0F == 0x03 and self._event is None:
                    self._crc_absorb()  # CalcCRC still running: the coprocessor takes the byte
        elif a == 0x0A:
            if v & 0x80:
                self.fifo = bytearray()
                r[0x06] &= ~0x10
        elif a in (0x04, 0x05):
            bits = v & 0x7F
            r[a] = (r[a] | bits) if v & 0x80 else (r[a] & ~bits)
        elif a == 0x01:
            self._command(v)
        elif a == 0x0D:
            r[a] = v & 0x7F
            if v & 0x80 and r[0x01] & 0x0F == 0x0C:
                self._transmit()
        elif a in (0x06, 0x07, 0x08, 0x0C, 0x37, 0x21, 0x22):
            pass  # read-only (ControlReg: only RxLastBits modelled)
        elif a == 0x0E:
            r[a] = (r[a] & 0x7F) | (v & 0x80)
        else:
            r[a] = v
        self._irq_line()

    def _command(self, v):
        cmd = v & 0x0F
        if cmd == 0x07:  # NoCmdChange: only RcvOff/PowerDown change
            self.r[0x01] = (self.r[0x01] & 0xCF) | (v & 0x30)
            return
        self.r[0x01] = (self.r[0x01] & 0xE0) | (v & 0x30) | cmd
        if cmd == 0x0F:
            self._reset()
            self.r[0x01] = 0x30  # PowerDown while the oscillator restarts
            self._event = (self.clock.now_us + 40, self._reset_done)
        elif cmd == 0x00:
            self._event = None
        elif cmd == 0x03:
            self._crc = _PRESETS[self.r[0x11] & 3]  # preset loaded when the command starts
            self.log.append(("crc", b""))
            self._event = (self.clock.now_us + 1 + len(self.fifo), self._crc_absorb)
        else:
            self._event = None  # a new command ends the one running (CalcCRC included)

    def _reset_done(self):
        self.r[0x01] = 0x20

    def _crc_absorb(self):
        r = self.r
        if r[0x01] & 0x0F != 0x03:
            return
        data = bytes(self.fifo)
        self.fifo = bytearray()
        self._crc = c = crc_a(data, self._crc)
        k, d = self.log[-1]
        self.log[-1] = (k, d + data)  # everything this CalcCRC run has taken so far
        r[0x21], r[0x22] = c >> 8, c & 0xFF
        r[0x05] |= 0x04  # CRCIRq: all data processed

    # -- transceive -----------------------------------------------------------------------
    def _transmit(self):
        r = self.r
        last = r[0x0D] & 7
        align = (r[0x0D] >> 4) & 7
        data = bytes(self.fifo)
        self.fifo = bytearray()
        nbits = len(data) * 8 - ((8 - last) if last else 0)
        self.log.append(("tx", data))
        r[0x06] &= 0x40  # errors cleared when a command starts (TempErr stays)
        r[0x04] |= 0x40  # TxIRq
        t_end = self.clock.now_us + nbits * _BIT_US
        answers = []
        if r[0x14] & 0x03:  # antenna on
            for c in self.cards:
                a = c.answer(data, nbits)
                if a is not None:
                    answers.append(a)
        if answers:
            n = max(len(a) for a in answers)
            t = t_end + _FDT_US + n * _BIT_US
            self._event = (t, lambda: self._receive(answers, align))
        elif r[0x2A] & 0x80 and not self.timer_broken:  # TAuto: timer starts after sending
            presc = ((r[0x2A] & 0x0F) << 8) | r[0x2B]
            reload = (r[0x2C] << 8) | r[0x2D]
            t = t_end + (reload + 1) * (2 * presc + 1) / 13.56
            self._event = (t, self._timeout)
        else:
            self._event = None

    def _timeout(self):
        self.r[0x04] |= 0x01  # TimerIRq

    def _receive(self, answers, align):
        r = self.r
        bits = []
        coll = -1
        for i in range(max(len(a) for a in answers)):
            vals = [a[i] for a in answers if i < len(a)]
            if coll < 0 and (min(vals) != max(vals) or len(vals) != len(answers)):
                coll = i
            bits.append(0 if coll >= 0 and i >= coll and not r[0x0E] & 0x80 else max(vals))
        nbits = align + len(bits)
        out = bytearray((nbits + 7) // 8)
        for i, b in enumerate(bits):
            p = align + i
            out[p >> 3] |= b << (p & 7)
        self.fifo = out
        r[0x0C] = (r[0x0C] & 0xF8) | (nbits & 7)  # RxLastBits
        err = self.inject
        self.inject = 0
        if coll >= 0:
            err |= 0x08  # CollErr
            pos = align + coll + 1
            r[0x0E] = (r[0x0E] & 0x80) | (pos & 0x1F if pos <= 32 else 0x20)
        else:
            r[0x0E] = (r[0x0E] & 0x80) | 0x20  # CollPosNotValid: no collision
        r[0x06] = (r[0x06] & 0x40) | err
        r[0x04] |= 0x20 | (0x02 if err else 0)  # RxIRq (+ ErrIRq)

    # -- time and IRQ line ----------------------------------------------------------------
    def _update(self):
        ev = self._event
        if ev is not None and self.clock.now_us >= ev[0]:
            self._event = None
            ev[1]()
        self._irq_line()

    def _irq_line(self):
        r = self.r
        active = (r[0x04] & r[0x02] & 0x7F) or (r[0x05] & r[0x03] & 0x14)
        level = (0 if active else 1) if r[0x02] & 0x80 else (1 if active else 0)  # IRqInv
        self.irq.drive(level)

    # -- test helpers ---------------------------------------------------------------------
    def over_the_air(self):
        return [d for k, d in self.log if k == "tx"]
