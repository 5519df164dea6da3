# Test-side builders for whitelist updates (protocol.md "Whitelist updates"): delta objects and
# chunk messages. MicroPython-compatible, so the same cases run under CPython and in the VM. The
# cloud's own builder is cloud.domain.whitelist.build_delta / chunk (cross-checked in tests).
import binascii
import struct

CHUNK_HDR = "<4sBBHHHIIIII"


def records(wl):
    """{key: 12-byte record} of a format-1 whitelist."""
    n = struct.unpack_from("<I", wl, 12)[0]
    out = {}
    for i in range(n):
        r = wl[32 + i * 12:32 + i * 12 + 12]
        out[bytes(r[:8])] = bytes(r)
    return out


def build_delta(old, new):
    """Delta from whitelist bytes `old` to `new` (both format 1)."""
    base = struct.unpack_from("<I", old, 8)[0]
    ver, n, crc = struct.unpack_from("<III", new, 8)
    a, b = records(old), records(new)
    rem = sorted(k for k in a if k not in b)
    add = sorted(k for k in b if a.get(k) != b[k])
    hdr = b"QWD1" + struct.pack("<HHIIIIII", 1, 12, base, ver, len(rem), len(add), n, crc)
    return hdr + b"".join(rem) + b"".join(b[k] for k in add)


def chunks(data, version, base=0, kind=0, size=1024, crc=None):
    """The chunk messages of one object (kind 0 snapshot, 1 delta)."""
    if crc is None:
        crc = binascii.crc32(data) & 0xFFFFFFFF
    count = max(1, (len(data) + size - 1) // size)
    out = []
    for i in range(count):
        part = data[i * size:(i + 1) * size]
        hdr = struct.pack(CHUNK_HDR, b"QWC1", kind, 0, i, count, 0, version, base, len(data),
                          crc, i * size)
        out.append(hdr + part)
    return out
