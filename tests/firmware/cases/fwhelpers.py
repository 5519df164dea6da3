# Helpers shared by the firmware case modules. MicroPython-compatible (no pathlib, tempfile,
# zlib), so the same cases run under CPython and in the MicroPython VM.
import binascii
import hashlib
import os
import struct


def tempdir():
    path = "/tmp/qadam-fw-" + binascii.hexlify(os.urandom(6)).decode()
    os.mkdir(path)
    return path


def rmtree(path):
    for name in os.listdir(path):
        p = path + "/" + name
        try:
            os.remove(p)
        except OSError:
            rmtree(p)
    os.rmdir(path)


def key(i):
    """A deterministic 8-byte card key."""
    return hashlib.sha256(b"card%d" % i).digest()[:8]


def whitelist_bytes(version, keys, attrs=1, magic=b"QWL1", fmt=1, rsize=12, crc=None):
    """Tiny format-1 builder (protocol.md): 32-byte header + sorted 12-byte records."""
    recs = b"".join(k + bytes([attrs, 0, 0, 0]) for k in sorted(keys))
    if crc is None:
        crc = binascii.crc32(recs) & 0xFFFFFFFF
    hdr = magic + struct.pack("<HHIII", fmt, rsize, version, len(keys), crc) + bytes(12)
    return hdr + recs


def write_whitelist(path, version, keys, attrs=1):
    """Same as whitelist_bytes, streamed to a file one record at a time (fits a 64 KiB heap)."""
    keys = sorted(keys)
    crc = 0
    for k in keys:
        crc = binascii.crc32(k + bytes([attrs, 0, 0, 0]), crc)
    with open(path, "wb") as f:
        f.write(b"QWL1" + struct.pack("<HHIII", 1, 12, version, len(keys), crc & 0xFFFFFFFF))
        f.write(bytes(12))
        for k in keys:
            f.write(k + bytes([attrs, 0, 0, 0]))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()
