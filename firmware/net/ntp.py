# SNTP client over a non-blocking UDP socket (RFC 4330): the event loop never waits on it.
# Imported only when device.json names NTP servers (protocol.md "Clock"):
#   "ntp": {"servers": ["10.0.0.1", "pool.ntp.org:123"], "every_s": 3600, "retry_s": 30}
# (or just the list). At boot and every `every_s` the servers are asked in order until one
# answers; none answering is retried every `retry_s` while the clock keeps running unsynced (or
# on its last sync): events say so (sync 0) and the cloud corrects them once the board syncs.
# No query while the network is down (net.netup). Name resolution (getaddrinfo) blocks on the
# ESP32: configure an IP address where that matters.
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


async def run(clock, cfg, net=None):
    if isinstance(cfg, list):
        cfg = {"servers": cfg}
    servers = cfg.get("servers") or ()
    every = cfg.get("every_s", 3600)
    retry = cfg.get("retry_s", 30)
    while True:
        while net is not None and not net.up:
            await sleep_ms(500)
        t = None
        for srv in servers:
            host, _, port = srv.partition(":")
            try:
                t = await query(host, int(port or 123))
            except Exception as e:
                print("# ntp:", srv, repr(e))
            if t is not None:
                clock.set(t)
                break
        await sleep_ms((every if t is not None else retry) * 1000)
