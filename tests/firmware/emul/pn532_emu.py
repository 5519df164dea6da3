# PN532 emulator on an I2C-like object (writeto / readfrom_into), driven by a virtual Clock.
# Host frames are checked (LCS/DCS); the chip answers with an ACK after ack_us, then the response
# after resp_us. Every read starts with the status byte (bit 0 = ready). Injections: a NACK
# instead of the ACK, corrupt response checksums, an error frame, busy address NAKs, silence.
#
# InListPassiveTarget honours RFConfiguration CfgItem 0x05 (MaxRetries) as in the NXP PN532 User
# Manual UM0701-02 (7.3.1, 7.3.5): MxRtyPassiveActivation 0xFF (the power-up default) retries
# forever, 0x00..0xFE gives up after that many retries (0x00: one try). The first try ends
# resp_us after the ACK was read, each further try retry_us later (modelled timings, not
# measured). While no card is in the field and retries remain the chip stays busy (status not
# ready), so a host that never set MaxRetries sees its own timeout; a card that comes into the
# field is answered at the next status poll. The host aborts with an ACK frame or a new command.
from iso14443a import Card

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
_SEARCH = "search"  # InListPassiveTarget: the answer is decided while the chip searches


def frame(data, tfi=0xD5):
    ln = len(data) + 1
    body = bytes([tfi]) + bytes(data)
    return bytes([0, 0, 0xFF, ln, (-ln) & 0xFF]) + body + bytes([(-sum(body)) & 0xFF, 0])


class PN532Chip:
    def __init__(self, clock, uids=(), addr=0x24):
        self.clock = clock
        self.addr = addr
        self.cards = [Card(u) for u in uids]
        self.ack_us = 500
        self.resp_us = 4000
        self.retry_us = 1000
        self.nack_next = False
        self.corrupt_next = None  # "dcs" | "lcs" | "error"
        self.busy_naks = 0  # next n transactions: address not acknowledged (OSError)
        self.silent = False  # never becomes ready
        self.received = []  # valid host frames: (cmd, params)
        self.bad_frames = 0
        self.aborts = 0
        self.transactions = 0
        self.config = {}
        self._out = None
        self._ready_at = 0
        self._next = None  # response to queue once the ACK has been read
        self._search = None  # (start_us, tries allowed or 0 = forever) while searching

    def _check_busy(self):
        self.transactions += 1
        if self.busy_naks:
            self.busy_naks -= 1
            raise OSError(19)  # ENODEV, as machine.I2C reports a NAKed address

    # -- I2C-like -------------------------------------------------------------------------
    def writeto(self, addr, buf):
        self._check_busy()
        if addr != self.addr:
            raise OSError(19)
        b = bytes(buf)
        if b == ACK:
            self.aborts += 1
            self._out = self._next = self._search = None  # the host aborts the command
            return len(b)
        if len(b) < 8 or b[0:3] != b"\x00\x00\xff" or (b[3] + b[4]) & 0xFF:
            self.bad_frames += 1
            return len(b)
        ln = b[3]
        body = b[5 : 5 + ln]
        if len(body) != ln or (sum(body) + b[5 + ln]) & 0xFF or body[0] != 0xD4:
            self.bad_frames += 1  # the PN532 drops frames it cannot check: no ACK
            return len(b)
        cmd, params = body[1], body[2:]
        self.received.append((cmd, params))
        self._search = None  # a new command ends a search (modelled; UM0701 is silent)
        if self.nack_next:
            self.nack_next = False
            self._queue(NACK, self.ack_us)
            return len(b)
        self._queue(ACK, self.ack_us)
        self._next = self._respond(cmd, params)
        return len(b)

    def readfrom_into(self, addr, buf):
        self._check_busy()
        if addr != self.addr:
            raise OSError(19)
        if self._search is not None:
            self._searching()
        ready = self._out is not None and self.clock.now_us >= self._ready_at and not self.silent
        buf[0] = 0x01 if ready else 0x00
        for i in range(1, len(buf)):
            buf[i] = 0
        if not ready or len(buf) == 1:
            return
        out = self._out
        for i in range(min(len(out), len(buf) - 1)):
            buf[1 + i] = out[i]
        self._out = None
        if out == ACK and self._next is not None:
            if self._next is _SEARCH:
                mx = self.config.get(0x05, b"\xff\x01\xff")[2:3] or b"\xff"
                self._search = (self.clock.now_us, 0 if mx[0] == 0xFF else mx[0] + 1)
            else:
                self._queue(self._next, self.resp_us)
            self._next = None

    def _searching(self):
        start, allowed = self._search
        t = self.clock.now_us - start - self.resp_us
        if t < 0:
            return  # the first try is still running
        card = None
        for c in self.cards:
            if c.state != "halt":
                card = c
                break
        if card is not None:
            atqa = card.atqa
            data = bytes([1, 1, atqa[1], atqa[0], card.sak, len(card.uid)]) + card.uid
        elif allowed and t // self.retry_us + 1 >= allowed:
            data = b"\x00"  # NbTg 0: every allowed try found nothing
        else:
            return  # MaxRetries not used up (or 0xFF): the chip keeps searching
        self._search = None
        self._queue(self._answer(0x4A, data), 0)

    def _queue(self, data, delay_us):
        self._out = data
        self._ready_at = self.clock.now_us + delay_us

    # -- commands -------------------------------------------------------------------------
    def _respond(self, cmd, p):
        if cmd == 0x02:
            data = b"\x32\x01\x06\x07"
        elif cmd == 0x14:
            data = b""
        elif cmd == 0x32:
            self.config[p[0]] = bytes(p[1:])
            data = b""
        elif cmd == 0x4A and len(p) >= 2 and p[1] == 0x00:
            return _SEARCH
        else:
            return ERROR_FRAME
        return self._answer(cmd, data)

    def _answer(self, cmd, data):
        f = bytearray(frame(bytes([cmd + 1]) + data))
        how = self.corrupt_next
        self.corrupt_next = None
        if how == "dcs":
            f[-2] ^= 0x01
        elif how == "lcs":
            f[4] ^= 0x01
        elif how == "error":
            return ERROR_FRAME
        return bytes(f)
