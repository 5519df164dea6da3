# PN532 chip logic: host <-> PN532 normal information frames, ACK/NACK, and the commands a door
# reader needs (GetFirmwareVersion, SAMConfiguration, RFConfiguration, InListPassiveTarget).
# The bus (hal.pn532_i2c) provides write(buf), ready() -> bool and read(buf, n) -> n; this module
# never touches the bus protocol (status byte, addresses) itself.
#
# NXP PN532 User Manual UM0701-02, section 6.2.1: frame = 00 (preamble) 00 FF (start code) LEN
# LCS (LEN + LCS = 0) TFI (D4 host->PN532, D5 PN532->host) PD0..PDn DCS (TFI + PD + DCS = 0)
# 00 (postamble). ACK = 00 00 FF 00 FF 00, NACK = 00 00 FF FF 00 00, error frame TFI = 7F.
import time

_TFI_HOST = 0xD4
_TFI_PN532 = 0xD5
_ACK = b"\x00\x00\xff\x00\xff\x00"
_NACK = b"\x00\x00\xff\xff\x00\x00"

CMD_GET_FIRMWARE_VERSION = 0x02
CMD_SAM_CONFIGURATION = 0x14
CMD_RF_CONFIGURATION = 0x32
CMD_IN_LIST_PASSIVE_TARGET = 0x4A


class PN532Error(OSError):
    pass


class PN532:
    """`bus`: hal.pn532_i2c.PN532I2C (or SPI/UART adapters with the same three methods).
    `delay_ms`: injectable sleep. Every wait is a bounded number of status polls."""

    def __init__(self, bus, delay_ms=None, poll_ms=2, ack_timeout_ms=20, max_data=40):
        self.bus = bus
        if delay_ms is None:
            delay_ms = getattr(time, "sleep_ms", None) or _sleep_ms
        self._delay = delay_ms
        self.poll_ms = poll_ms
        self.ack_timeout_ms = ack_timeout_ms
        self._tx = bytearray(9 + max_data)
        self._txv = memoryview(self._tx)
        self._rx = bytearray(9 + max_data)
        self._rxv = memoryview(self._rx)
        self._p = bytearray(4)  # parameters of the poll-path commands
        self._pv = memoryview(self._p)
        self.errors = 0
        self.timeouts = 0
        self.atqa = 0
        self.sak = 0

    # -- frames ---------------------------------------------------------------------------
    def _build(self, cmd, params):
        n = len(params)
        f = self._tx
        if n + 9 > len(f):
            raise ValueError("PN532 frame too long")
        ln = n + 2  # TFI + command code + parameters
        f[0], f[1], f[2], f[3], f[4] = 0x00, 0x00, 0xFF, ln, (-ln) & 0xFF
        f[5], f[6] = _TFI_HOST, cmd
        s = _TFI_HOST + cmd
        for i in range(n):
            f[7 + i] = params[i]
            s += params[i]
        f[7 + n] = (-s) & 0xFF  # DCS
        f[8 + n] = 0x00
        return 9 + n

    def _wait_ready(self, timeout_ms):
        for _ in range(timeout_ms // self.poll_ms + 1):
            if self.bus.ready():
                return True
            self._delay(self.poll_ms)
        return False

    def _parse(self, cmd, n):
        """Check the response frame in self._rx[0:n]; returns (offset, length) of the data."""
        b = self._rx
        i = 0
        while i + 1 < n and not (b[i] == 0x00 and b[i + 1] == 0xFF):  # skip the preamble
            i += 1
        if i + 4 > n:
            raise PN532Error("PN532: no start code")
        ln, lcs = b[i + 2], b[i + 3]
        if ln == 0xFF and lcs == 0x00:
            raise PN532Error("PN532: NACK")
        if (ln + lcs) & 0xFF:
            raise PN532Error("PN532: bad length checksum")
        if ln < 1 or i + 5 + ln > n:
            raise PN532Error("PN532: short frame")
        s = 0
        for k in range(i + 4, i + 5 + ln):  # TFI .. DCS
            s += b[k]
        if s & 0xFF:
            raise PN532Error("PN532: bad data checksum")
        if b[i + 4] == 0x7F:
            raise PN532Error("PN532: error frame")
        if ln < 2 or b[i + 4] != _TFI_PN532 or b[i + 5] != cmd + 1:
            raise PN532Error("PN532: unexpected response")
        return i + 6, ln - 2

    def command(self, cmd, params=b"", timeout_ms=100):
        """Send a command, check the ACK, wait for and check the response. Returns a memoryview of
        the response data, or None when the response did not come within timeout_ms (the command
        is then aborted with an ACK). Raises PN532Error on NACK or a corrupt frame."""
        n = self._build(cmd, params)
        self.bus.write(self._txv[:n])
        if not self._wait_ready(self.ack_timeout_ms):
            raise PN532Error("PN532: no ACK")
        r = self._rx
        if self.bus.read(r, 6) != 6:
            raise PN532Error("PN532: no ACK")
        if r[0] != 0 or r[1] != 0 or r[2] != 0xFF or r[3] != 0x00 or r[4] != 0xFF:
            raise PN532Error("PN532: NACK" if r[3] == 0xFF and r[4] == 0x00 else "PN532: bad ACK")
        if not self._wait_ready(timeout_ms):
            self.bus.write(_ACK)  # UM0701 6.2.1.3: an ACK from the host aborts the command
            self.timeouts += 1
            return None
        got = self.bus.read(self._rx, len(self._rx))
        if not got:
            raise PN532Error("PN532: response vanished")
        off, ln = self._parse(cmd, got)
        return self._rxv[off:off + ln]

    # -- commands -------------------------------------------------------------------------
    def init(self, retries=1):
        """Wake the chip, check the firmware, normal SAM mode, bounded passive retries.
        Returns (IC, Ver, Rev, Support)."""
        try:
            fw = self.command(CMD_GET_FIRMWARE_VERSION)
        except OSError:  # the first frame after power-up may only wake it
            self._delay(10)
            fw = self.command(CMD_GET_FIRMWARE_VERSION)
        if fw is None or len(fw) != 4:
            raise PN532Error("PN532: no firmware version")
        info = (fw[0], fw[1], fw[2], fw[3])
        # SAMConfiguration: Mode 1 normal (no SAM), timeout 0x14 * 50 ms, use P70_IRQ
        self.command(CMD_SAM_CONFIGURATION, b"\x01\x14\x01")
        # RFConfiguration CfgItem 5 (MaxRetries): MxRtyATR, MxRtyPSL, MxRtyPassiveActivation.
        # The default 0xFF retries forever: InListPassiveTarget would never return on an empty
        # field.
        self.command(CMD_RF_CONFIGURATION, bytes((0x05, 0xFF, 0x01, retries)))
        return info

    def read_uid(self, timeout_ms=100):
        """InListPassiveTarget, MaxTg 1, BrTy 0 (106 kbps type A). Returns the NFCID1 (UID)
        bytes or None (no card, timeout, or a rejected frame, counted in self.errors)."""
        p = self._p
        p[0], p[1] = 1, 0x00
        try:
            d = self.command(CMD_IN_LIST_PASSIVE_TARGET, self._pv[:2], timeout_ms)
        except OSError:  # PN532Error (NACK, checksum, ...) or a bus error
            self.errors += 1
            return None
        if d is None or len(d) < 1 or d[0] == 0:
            return None
        # NbTg, Tg, SENS_RES (2), SEL_RES, NFCIDLength, NFCID1 ... [ATS]
        if len(d) < 6 or d[5] not in (4, 7, 10) or len(d) < 6 + d[5]:
            self.errors += 1
            return None
        self.atqa = (d[2] << 8) | d[3]
        self.sak = d[4]
        return bytes(d[6:6 + d[5]])


def _sleep_ms(ms):
    time.sleep(ms / 1000)
