# MFRC522 chip logic (ISO/IEC 14443 A reader). Talks to the chip through a bus adapter with
# read_reg(reg), write_reg(reg, val), write_fifo(buf), read_fifo(buf, n) (hal.mfrc522_spi), so the
# same logic serves SPI, I2C or UART boards and the register-level emulator in the tests.
#
# Register addresses and bits: NXP MFRC522 datasheet rev 3.9, section 9 (tables 20..116); card
# protocol: ISO/IEC 14443-3 (REQA/WUPA, anticollision/SELECT cascade levels, HLTA, CRC_A).
# Poll path: one REQA costs a fixed number of bus transfers and no heap allocation when the field
# is empty; the timer (TAuto) ends an unanswered Transceive with TimerIRq after `timeout_ms`.
import time

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Registers (datasheet table 20)
_CommandReg = const(0x01)
_ComIEnReg = const(0x02)
_DivIEnReg = const(0x03)
_ComIrqReg = const(0x04)
_DivIrqReg = const(0x05)
_ErrorReg = const(0x06)
_FIFOLevelReg = const(0x0A)
_ControlReg = const(0x0C)
_BitFramingReg = const(0x0D)
_CollReg = const(0x0E)
_ModeReg = const(0x11)
_TxControlReg = const(0x14)
_TxASKReg = const(0x15)
_CRCResultRegH = const(0x21)
_CRCResultRegL = const(0x22)
_TModeReg = const(0x2A)
_TPrescalerReg = const(0x2B)
_TReloadRegH = const(0x2C)
_TReloadRegL = const(0x2D)
_VersionReg = const(0x37)

# Commands (datasheet 10.3, table 149)
_CMD_IDLE = const(0x00)
_CMD_CALCCRC = const(0x03)
_CMD_TRANSCEIVE = const(0x0C)
_CMD_SOFTRESET = const(0x0F)
_POWER_DOWN = const(0x10)  # CommandReg bit 4: set while the soft reset is in progress

# ComIrqReg bits (table 30); writing with bit 7 (Set1) = 0 clears the marked bits
_RX_IRQ = const(0x20)
_IDLE_IRQ = const(0x10)
_ERR_IRQ = const(0x02)
_TIMER_IRQ = const(0x01)
_CRC_IRQ = const(0x04)  # DivIrqReg bit 2 (table 32)

# ErrorReg bits (table 34)
_TEMP_ERR = const(0x40)
_BUFFER_OVFL = const(0x10)
_COLL_ERR = const(0x08)
_PARITY_ERR = const(0x02)
_PROTOCOL_ERR = const(0x01)
_COLL_POS_NOT_VALID = const(0x20)  # CollReg bit 5 (table 44)

# ISO/IEC 14443-3 commands
_REQA = const(0x26)
_WUPA = const(0x52)
_SEL = (0x93, 0x95, 0x97)  # cascade levels 1..3
_CT = const(0x88)  # cascade tag
_SAK_MORE = const(0x04)  # SAK bit 3: UID not complete

# Transceive results
OK = const(0)
TIMEOUT = const(1)  # nobody answered before the timer expired: an empty field
ERROR = const(2)  # parity/protocol/buffer/temperature error or malformed answer
COLLISION = const(3)


class MFRC522:
    """`bus`: hal.mfrc522_spi.MFRC522SPI (or any object with the same four methods).
    `irq_pin`: optional Pin wired to the chip's IRQ output; its handler only sets a flag, and the
    wait loop then touches the bus only after the flag is set. `delay_us`: injectable sleep."""

    def __init__(self, bus, irq_pin=None, delay_us=None, timeout_ms=25, first_poll_us=250,
                 max_poll_us=4000):
        self.bus = bus
        self.irq_pin = irq_pin
        if delay_us is None:
            delay_us = getattr(time, "sleep_us", None) or _sleep_us
        self._delay = delay_us
        self.timeout_ms = timeout_ms
        self._first_us = first_poll_us
        self._max_us = max_poll_us
        # Enough polls that the summed back-off delays cover twice the chip's timer: if TimerIRq
        # never shows up (chip gone, bus dead) the wait still ends.
        n, total, d = 0, 0, first_poll_us
        while total < 2000 * timeout_ms + 1000:
            total += d
            d = min(d * 2, max_poll_us)
            n += 1
        self.max_polls = n
        self._flag = False
        self._tx = bytearray(9)  # SEL NVB CL0..3 BCC CRC0 CRC1
        self._txv = memoryview(self._tx)
        self._rx = bytearray(16)
        self._rxv = memoryview(self._rx)
        self._cl = bytearray(5)  # CLn + BCC being resolved
        self._uid = bytearray(10)
        self._req = bytearray(1)
        self._hlta = bytearray(b"\x50\x00\x57\xcd")  # HLTA + CRC_A(50 00) = 0xCD57, LSB first
        self.rx_len = 0
        self.rx_last_bits = 0
        self.last_error = 0  # ErrorReg of the last failed transceive
        self.errors = 0
        self.collisions = 0
        self.atqa = 0
        self.sak = 0

    # -- set-up ---------------------------------------------------------------------------
    def init(self):
        """Soft reset and configure; returns VersionReg. Raises OSError when no chip answers."""
        b = self.bus
        b.write_reg(_CommandReg, _CMD_SOFTRESET)
        for _ in range(50):  # oscillator start-up is ~37.74 us; PowerDown clears when done
            self._delay(1000)
            if not b.read_reg(_CommandReg) & _POWER_DOWN:
                break
        version = b.read_reg(_VersionReg)
        if version in (0x00, 0xFF):
            raise OSError("MFRC522 not responding (VersionReg 0x%02x)" % version)
        # Timer (section 8.5): f_timer = 13.56 MHz / (2 * TPrescaler + 1). TPrescaler = 0x0A9 =
        # 169 gives 40 kHz (25 us ticks); TAuto (TModeReg bit 7) starts it at the end of every
        # transmission and the 5th received bit stops it, so silence ends in TimerIRq.
        reload = self.timeout_ms * 40
        b.write_reg(_TModeReg, 0x80)
        b.write_reg(_TPrescalerReg, 0xA9)
        b.write_reg(_TReloadRegH, (reload >> 8) & 0xFF)
        b.write_reg(_TReloadRegL, reload & 0xFF)
        b.write_reg(_TxASKReg, 0x40)  # Force100ASK: 100 % ASK modulation (table 57)
        b.write_reg(_ModeReg, 0x3D)  # CRCPreset 01 = 0x6363 (CRC_A), TxWaitRF, PolMFin high
        b.write_reg(_CollReg, 0x00)  # ValuesAfterColl = 0: bits after a collision read as 0
        if self.irq_pin is not None:
            # ComIEnReg: IRqInv (IRQ active low) | RxIEn | IdleIEn | TimerIEn; DivIEnReg:
            # IRQPushPull | CRCIEn. The pin handler only sets a flag.
            b.write_reg(_ComIEnReg, 0x80 | _RX_IRQ | _IDLE_IRQ | _TIMER_IRQ)
            b.write_reg(_DivIEnReg, 0x80 | _CRC_IRQ)
            trig = getattr(self.irq_pin, "IRQ_FALLING", 2)
            self.irq_pin.irq(trigger=trig, handler=self._isr)
        self.antenna(True)
        return version

    def antenna(self, on):
        v = self.bus.read_reg(_TxControlReg)
        want = (v | 0x03) if on else (v & ~0x03)  # Tx1RFEn | Tx2RFEn (table 54)
        if want != v:
            self.bus.write_reg(_TxControlReg, want)

    def _isr(self, pin):
        self._flag = True

    # -- low level ------------------------------------------------------------------------
    def _wait(self, reg, done_mask):
        """Poll `reg` with exponential back-off until any bit of done_mask is set; bounded."""
        delay = self._first_us
        use_flag = self.irq_pin is not None
        for _ in range(self.max_polls):
            self._delay(delay)
            if not use_flag or self._flag:
                v = self.bus.read_reg(reg)
                if v & done_mask:
                    return v
            if delay < self._max_us:
                delay = min(delay * 2, self._max_us)
        return self.bus.read_reg(reg)  # last look, e.g. an IRQ line that is not wired

    def transceive(self, data, tx_last_bits=0, rx_align=0):
        """Send `data` (a buffer of the exact frame length) and receive into self._rx.
        Returns OK (self.rx_len bytes, self.rx_last_bits), TIMEOUT, ERROR or COLLISION."""
        b = self.bus
        b.write_reg(_CommandReg, _CMD_IDLE)
        b.write_reg(_ComIrqReg, 0x7F)  # clear every request bit (also releases the IRQ line)
        b.write_reg(_FIFOLevelReg, 0x80)  # FlushBuffer
        b.write_fifo(data)
        b.write_reg(_CommandReg, _CMD_TRANSCEIVE)
        self._flag = False
        b.write_reg(_BitFramingReg, 0x80 | (rx_align << 4) | tx_last_bits)  # StartSend
        irq = self._wait(_ComIrqReg, _RX_IRQ | _IDLE_IRQ | _TIMER_IRQ)
        if not irq & (_RX_IRQ | _IDLE_IRQ):
            if irq & _TIMER_IRQ:
                return TIMEOUT
            self.errors += 1
            self.last_error = 0
            return ERROR  # neither answer nor timer: the chip is not running
        err = b.read_reg(_ErrorReg)
        if err & (_BUFFER_OVFL | _PARITY_ERR | _PROTOCOL_ERR | _TEMP_ERR):
            self.errors += 1
            self.last_error = err
            return ERROR
        n = b.read_reg(_FIFOLevelReg) & 0x7F
        if n > len(self._rx):
            self.errors += 1
            self.last_error = _BUFFER_OVFL
            return ERROR
        b.read_fifo(self._rx, n)
        self.rx_len = n
        self.rx_last_bits = b.read_reg(_ControlReg) & 0x07
        if err & _COLL_ERR:
            self.last_error = err
            return COLLISION
        return OK

    def crc_a(self, data, out, off):
        """CRC_A of `data` by the chip's coprocessor (CalcCRC, DivIrqReg CRCIRq); stores it LSB
        first at out[off], out[off+1]. Returns False if the coprocessor did not finish."""
        b = self.bus
        b.write_reg(_CommandReg, _CMD_IDLE)
        b.write_reg(_DivIrqReg, _CRC_IRQ)  # clear CRCIRq
        if self.irq_pin is not None:
            b.write_reg(_ComIrqReg, 0x7F)  # release the IRQ line so CRCIRq makes a new edge
        b.write_reg(_FIFOLevelReg, 0x80)
        b.write_fifo(data)
        self._flag = False
        b.write_reg(_CommandReg, _CMD_CALCCRC)
        ok = self._wait(_DivIrqReg, _CRC_IRQ) & _CRC_IRQ
        b.write_reg(_CommandReg, _CMD_IDLE)
        if not ok:
            self.errors += 1
            return False
        out[off] = b.read_reg(_CRCResultRegL)
        out[off + 1] = b.read_reg(_CRCResultRegH)
        return True

    # -- ISO 14443-3 ----------------------------------------------------------------------
    def request(self, wake=False):
        """REQA (or WUPA): 7-bit short frame. Returns ATQA as an int, or None."""
        self._req[0] = _WUPA if wake else _REQA
        st = self.transceive(self._req, 7)  # BitFramingReg TxLastBits = 7
        if st == TIMEOUT:
            return None
        if st != OK or self.rx_len != 2 or self.rx_last_bits:
            if st == COLLISION:  # several cards answer ATQA: normal, anticollision sorts it out
                return self._rx[0] | (self._rx[1] << 8)
            if st == OK:
                self.errors += 1
            return None
        self.atqa = self._rx[0] | (self._rx[1] << 8)
        return self.atqa

    def _anticoll(self, sel):
        """Bitwise anticollision for one cascade level: fills self._cl with CLn + BCC."""
        cl = self._cl
        tx = self._tx
        known = 0
        for _ in range(33):  # each collision fixes at least one more bit
            nb, nbits = known >> 3, known & 7
            tx[0] = sel
            tx[1] = ((2 + nb) << 4) | nbits  # NVB
            ntx = 2 + nb + (1 if nbits else 0)
            for i in range(ntx - 2):
                tx[2 + i] = cl[i]
            st = self.transceive(self._txv[:ntx], nbits, nbits)
            if st == TIMEOUT or st == ERROR:
                return False
            n = self.rx_len
            if nb + n > 5 or n == 0:
                self.errors += 1
                return False
            keep = (1 << nbits) - 1  # bits of the first byte that we sent ourselves
            for i in range(n):
                v = self._rx[i]
                if i == 0 and nbits:
                    v = (cl[nb] & keep) | (v & ~keep & 0xFF)
                cl[nb + i] = v
            if st == COLLISION:
                self.collisions += 1
                coll = self.bus.read_reg(_CollReg)
                if coll & _COLL_POS_NOT_VALID:
                    return False
                pos = coll & 0x1F or 32  # 1-based, counted in the FIFO bit grid incl. RxAlign
                bit = (nb << 3) + pos - 1  # 0-based bit index in CLn
                if bit < known or bit >= 32:
                    self.errors += 1
                    return False
                cl[bit >> 3] |= 1 << (bit & 7)  # choose the card with a 1 here
                known = bit + 1
                continue
            if nb + n != 5 or cl[0] ^ cl[1] ^ cl[2] ^ cl[3] ^ cl[4]:
                self.errors += 1  # short answer or BCC mismatch
                return False
            return True
        return False

    def select(self):
        """Anticollision + SELECT over cascade levels 1..3. Returns the UID (4/7/10 bytes)."""
        uid = self._uid
        n = 0
        tx = self._tx
        for level in range(3):
            sel = _SEL[level]
            if not self._anticoll(sel):
                return None
            tx[0] = sel
            tx[1] = 0x70
            for i in range(5):
                tx[2 + i] = self._cl[i]
            if not self.crc_a(self._txv[:7], tx, 7):
                return None
            if self.transceive(self._txv[:9]) != OK:
                return None
            rx = self._rx
            if self.rx_len != 3 or self.rx_last_bits:
                self.errors += 1
                return None
            sak = rx[0]
            crc0, crc1 = rx[1], rx[2]
            if not self.crc_a(self._rxv[:1], rx, 1):
                return None
            if rx[1] != crc0 or rx[2] != crc1:
                self.errors += 1  # CRC_A of SAK wrong
                return None
            self.sak = sak
            if sak & _SAK_MORE:
                if self._cl[0] != _CT or level == 2:
                    self.errors += 1
                    return None
                for i in range(1, 4):
                    uid[n] = self._cl[i]
                    n += 1
            else:
                for i in range(4):
                    uid[n] = self._cl[i]
                    n += 1
                return bytes(uid[:n])
        return None

    def halt(self):
        """HLTA. A card acknowledges by staying silent, so success is the timer expiring."""
        return self.transceive(self._hlta) == TIMEOUT

    def read_uid(self, wake=False):
        """One poll: REQA (cards already halted stay silent until they leave the field, so a held
        card is read once), anticollision, SELECT, HLTA. Returns the UID bytes or None."""
        if self.request(wake) is None:
            return None
        uid = self.select()
        if uid is not None:
            self.halt()
        return uid


def _sleep_us(us):
    time.sleep(us / 1000000)
