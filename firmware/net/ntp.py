# SNTP client over a non-blocking UDP socket (RFC 4330): the event loop never waits on it.
# Imported only when device.json names an NTP server ("ntp": {"host": .., "port": 123}).
# Name resolution (getaddrinfo) blocks on the ESP32: configure an IP address where that matters.
import socket
import struct

from compat import sleep_ms, ticks_diff, ticks_ms

NTP_DELTA = 2208988800  # 1900-01-01 -> 1970-01-01


def parse(data):
    """Unix seconds from an NTP server reply, or None if it is not a usable reply."""
    if len(data) < 48:
        return None
    mode = data[0] & 7
    stratum = data[1]
    secs = struct.unpack_from("!I", data, 40)[0]
    if mode not in (4, 5) or not 0 < stratum < 16 or not secs:
        return None
    return secs - NTP_DELTA


async def query(host, port=123, timeout_ms=2000):
    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        pkt = bytearray(48)
        pkt[0] = 0x23  # LI 0, version 4, mode 3 (client)
        s.sendto(pkt, addr)
        t0 = ticks_ms()
        while ticks_diff(ticks_ms(), t0) < timeout_ms:
            try:
                data = s.recv(64)
            except OSError:  # EAGAIN: nothing yet
                await sleep_ms(20)
                continue
            t = parse(data)
            if t is not None:
                return t
        return None
    finally:
        s.close()


async def run(clock, host, port=123, every_s=3600):
    while True:
        t = None
        try:
            t = await query(host, port)
        except Exception as e:
            print("# ntp:", repr(e))
        if t is not None:
            clock.set(t)
        await sleep_ms((every_s if t is not None else 30) * 1000)
