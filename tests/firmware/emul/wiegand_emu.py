# Wiegand reader emulator: builds 26/34-bit frames and plays them on two Pin objects (D0, D1)
# whose falling edges fire the receiver's IRQ handlers, with timing from a virtual Clock.
from buses import Pin


def _parity(bits):
    return sum(bits) & 1


def frame_bits(data_bits):
    """Wraps data bits (MSB first) with even parity over the first half, odd over the second."""
    h = len(data_bits) // 2
    first, second = data_bits[:h], data_bits[h:]
    return [_parity(first)] + list(data_bits) + [1 - _parity(second)]


def int_bits(value, n):
    return [(value >> (n - 1 - i)) & 1 for i in range(n)]


def w26(facility, card):
    return frame_bits(int_bits(facility, 8) + int_bits(card, 16))


def w34(facility, card):
    return frame_bits(int_bits(facility, 16) + int_bits(card, 16))


def w34_bytes(raw):
    return frame_bits(int_bits(int.from_bytes(bytes(raw), "big"), 32))


class WiegandReader:
    def __init__(self, clock):
        self.clock = clock
        self.d0 = Pin(1)
        self.d1 = Pin(1)

    def send(self, bits, interval_us=2000, pulse_us=80):
        for b in bits:
            pin = self.d1 if b else self.d0
            pin.drive(0)
            self.clock.sleep_us(pulse_us)
            pin.drive(1)
            self.clock.sleep_us(interval_us - pulse_us)
