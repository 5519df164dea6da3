# Card reader front-ends for the ESP32 adapter (hal.esp32): one object per board.json readers[]
# entry with `name` (the reader name its taps carry), `period_ms` (poll period), `init()` (raises
# OSError when the chip does not answer) and `poll()` (normalised uid bytes or None; never blocks
# for long). Each class imports its driver in its constructor, so a board only loads the drivers
# it uses (memory is tight).


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


class MFRC522Reader:
    kind = "mfrc522"
    period_ms = 100  # an empty poll costs the chip timer (~25 ms): keep it under a quarter

    def __init__(self, name, spi, cs, irq=None):
        from hal.mfrc522 import MFRC522
        from hal.mfrc522_spi import MFRC522SPI

        self.name = name
        self.drv = MFRC522(MFRC522SPI(spi, cs), irq_pin=irq)

    def init(self):
        return self.drv.init()

    def poll(self):
        uid = self.drv.read_uid()
        return None if uid is None else normalise_uid("mfrc522", uid)


class PN532Reader:
    kind = "pn532"
    period_ms = 100

    def __init__(self, name, i2c, addr=0x24):
        from hal.pn532 import PN532
        from hal.pn532_i2c import PN532I2C

        self.name = name
        self.drv = PN532(PN532I2C(i2c, addr))

    def init(self):
        return self.drv.init()

    def poll(self):
        # MxRtyPassiveActivation is 1 after init(): an empty field answers within a few ms.
        uid = self.drv.read_uid(50)
        return None if uid is None else normalise_uid("pn532", uid)


class WiegandReader:
    kind = "wiegand"
    period_ms = 50  # frames are assembled by the pin IRQs; poll() only picks up a finished one

    def __init__(self, name, bits, d0, d1, reverse=False):
        from hal.wiegand import Wiegand

        self.name = name
        self.bits = bits
        self.reverse = reverse
        self.wrong_format = 0  # frames of the other Wiegand length (a misconfigured reader)
        self.drv = Wiegand(d0, d1)

    def init(self):
        return None

    def poll(self):
        f = self.drv.poll()
        if f is None:
            return None
        if f[0] != self.bits:
            self.wrong_format += 1
            return None
        return normalise_uid("wiegand", f[3], self.reverse)
