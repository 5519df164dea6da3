# The checks of a whitelist file at open (store.whitelist.Whitelist): header, and once at load
# the length and CRC of the records, so a truncated or corrupt download is refused as a whole
# instead of answering some lookups wrongly; and open_whitelist() for the boot. Loaded for them
# and unloaded again (heap).
import struct

from store.whitelist import HEADER_SIZE, RECORD_SIZE, Whitelist, WhitelistError

MAGIC = b"QWL1"


def check(wl, verify_crc):
    f = wl._f
    hdr = f.read(HEADER_SIZE)
    if len(hdr) != HEADER_SIZE:
        raise WhitelistError("short header (%d bytes)" % len(hdr))
    if hdr[0:4] != MAGIC:
        raise WhitelistError("bad magic %r" % bytes(hdr[0:4]))
    fmt, rsize, version, count, crc = struct.unpack("<HHIII", hdr[4:20])
    if fmt != 1:
        raise WhitelistError("unsupported format %d" % fmt)
    if rsize != RECORD_SIZE:
        raise WhitelistError("bad record size %d" % rsize)
    wl.version = version
    wl.count = count
    if not verify_crc:
        return
    import binascii
    buf = bytearray(RECORD_SIZE * 32)
    mv = memoryview(buf)
    left = count * RECORD_SIZE
    c = 0
    while left:
        n = f.readinto(mv[: min(left, len(buf))])
        if not n:
            raise WhitelistError("truncated: %d record bytes missing" % left)
        c = binascii.crc32(mv[:n], c)
        left -= n
    if f.read(1):
        raise WhitelistError("trailing bytes after %d records" % count)
    if (c & 0xFFFFFFFF) != crc:
        raise WhitelistError("record CRC mismatch")


def open_whitelist(path):
    """(whitelist or None, reason-if-None). Missing file and bad file are both 'deny all'."""
    try:
        return Whitelist(path), None
    except OSError:
        return None, "no_whitelist"
    except WhitelistError as e:
        print("# whitelist %s rejected: %s" % (path, e))
        return None, "bad_whitelist"
