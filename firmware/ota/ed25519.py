# Ed25519 signature verification (RFC 8032, section 5.1.7) in plain MicroPython: the ports have
# no ed25519 and no SHA-512, so both are here, on the VM's big integers. Used once per update,
# before a downloaded image is activated (ota/fetch.py), then unloaded: nothing of it stays in
# the heap. Verification only: the board never holds a private key. Not constant time, which a
# verifier of public data need not be. Extended twisted Edwards coordinates (X, Y, Z, T) and one
# joint double-and-add for [S]B - [h]A: one inversion at the end, no per-step inversions.
# Measured in the VM at the board's heap: docs/decisions.md D27-B.
P = 2 ** 255 - 19
L = 2 ** 252 + 27742317777372353535851937790883648493
M64 = 0xFFFFFFFFFFFFFFFF


def _k(i):
    # SHA-512's round constants: the first 64 bits of the fractional parts of the cube roots of
    # the first 80 primes, from a bytes constant (a literal: it stays in the image's flash, where
    # 80 integer objects or a bytes.fromhex copy would take heap).
    # Four constants of 160 bytes, not one of 640: no block of 640 bytes in one piece needed.
    k = _K0 if i < 20 else _K1 if i < 40 else _K2 if i < 60 else _K3
    i = 8 * (i % 20)
    return int.from_bytes(k[i:i + 8], "big")


_K0 = (
    b"\x42\x8a\x2f\x98\xd7\x28\xae\x22\x71\x37\x44\x91\x23\xef\x65\xcd\xb5\xc0\xfb\xcf"
    b"\xec\x4d\x3b\x2f\xe9\xb5\xdb\xa5\x81\x89\xdb\xbc\x39\x56\xc2\x5b\xf3\x48\xb5\x38"
    b"\x59\xf1\x11\xf1\xb6\x05\xd0\x19\x92\x3f\x82\xa4\xaf\x19\x4f\x9b\xab\x1c\x5e\xd5"
    b"\xda\x6d\x81\x18\xd8\x07\xaa\x98\xa3\x03\x02\x42\x12\x83\x5b\x01\x45\x70\x6f\xbe"
    b"\x24\x31\x85\xbe\x4e\xe4\xb2\x8c\x55\x0c\x7d\xc3\xd5\xff\xb4\xe2\x72\xbe\x5d\x74"
    b"\xf2\x7b\x89\x6f\x80\xde\xb1\xfe\x3b\x16\x96\xb1\x9b\xdc\x06\xa7\x25\xc7\x12\x35"
    b"\xc1\x9b\xf1\x74\xcf\x69\x26\x94\xe4\x9b\x69\xc1\x9e\xf1\x4a\xd2\xef\xbe\x47\x86"
    b"\x38\x4f\x25\xe3\x0f\xc1\x9d\xc6\x8b\x8c\xd5\xb5\x24\x0c\xa1\xcc\x77\xac\x9c\x65")
_K1 = (
    b"\x2d\xe9\x2c\x6f\x59\x2b\x02\x75\x4a\x74\x84\xaa\x6e\xa6\xe4\x83\x5c\xb0\xa9\xdc"
    b"\xbd\x41\xfb\xd4\x76\xf9\x88\xda\x83\x11\x53\xb5\x98\x3e\x51\x52\xee\x66\xdf\xab"
    b"\xa8\x31\xc6\x6d\x2d\xb4\x32\x10\xb0\x03\x27\xc8\x98\xfb\x21\x3f\xbf\x59\x7f\xc7"
    b"\xbe\xef\x0e\xe4\xc6\xe0\x0b\xf3\x3d\xa8\x8f\xc2\xd5\xa7\x91\x47\x93\x0a\xa7\x25"
    b"\x06\xca\x63\x51\xe0\x03\x82\x6f\x14\x29\x29\x67\x0a\x0e\x6e\x70\x27\xb7\x0a\x85"
    b"\x46\xd2\x2f\xfc\x2e\x1b\x21\x38\x5c\x26\xc9\x26\x4d\x2c\x6d\xfc\x5a\xc4\x2a\xed"
    b"\x53\x38\x0d\x13\x9d\x95\xb3\xdf\x65\x0a\x73\x54\x8b\xaf\x63\xde\x76\x6a\x0a\xbb"
    b"\x3c\x77\xb2\xa8\x81\xc2\xc9\x2e\x47\xed\xae\xe6\x92\x72\x2c\x85\x14\x82\x35\x3b")
_K2 = (
    b"\xa2\xbf\xe8\xa1\x4c\xf1\x03\x64\xa8\x1a\x66\x4b\xbc\x42\x30\x01\xc2\x4b\x8b\x70"
    b"\xd0\xf8\x97\x91\xc7\x6c\x51\xa3\x06\x54\xbe\x30\xd1\x92\xe8\x19\xd6\xef\x52\x18"
    b"\xd6\x99\x06\x24\x55\x65\xa9\x10\xf4\x0e\x35\x85\x57\x71\x20\x2a\x10\x6a\xa0\x70"
    b"\x32\xbb\xd1\xb8\x19\xa4\xc1\x16\xb8\xd2\xd0\xc8\x1e\x37\x6c\x08\x51\x41\xab\x53"
    b"\x27\x48\x77\x4c\xdf\x8e\xeb\x99\x34\xb0\xbc\xb5\xe1\x9b\x48\xa8\x39\x1c\x0c\xb3"
    b"\xc5\xc9\x5a\x63\x4e\xd8\xaa\x4a\xe3\x41\x8a\xcb\x5b\x9c\xca\x4f\x77\x63\xe3\x73"
    b"\x68\x2e\x6f\xf3\xd6\xb2\xb8\xa3\x74\x8f\x82\xee\x5d\xef\xb2\xfc\x78\xa5\x63\x6f"
    b"\x43\x17\x2f\x60\x84\xc8\x78\x14\xa1\xf0\xab\x72\x8c\xc7\x02\x08\x1a\x64\x39\xec")
_K3 = (
    b"\x90\xbe\xff\xfa\x23\x63\x1e\x28\xa4\x50\x6c\xeb\xde\x82\xbd\xe9\xbe\xf9\xa3\xf7"
    b"\xb2\xc6\x79\x15\xc6\x71\x78\xf2\xe3\x72\x53\x2b\xca\x27\x3e\xce\xea\x26\x61\x9c"
    b"\xd1\x86\xb8\xc7\x21\xc0\xc2\x07\xea\xda\x7d\xd6\xcd\xe0\xeb\x1e\xf5\x7d\x4f\x7f"
    b"\xee\x6e\xd1\x78\x06\xf0\x67\xaa\x72\x17\x6f\xba\x0a\x63\x7d\xc5\xa2\xc8\x98\xa6"
    b"\x11\x3f\x98\x04\xbe\xf9\x0d\xae\x1b\x71\x0b\x35\x13\x1c\x47\x1b\x28\xdb\x77\xf5"
    b"\x23\x04\x7d\x84\x32\xca\xab\x7b\x40\xc7\x24\x93\x3c\x9e\xbe\x0a\x15\xc9\xbe\xbc"
    b"\x43\x1d\x67\xc4\x9c\x10\x0d\x4c\x4c\xc5\xd4\xbe\xcb\x3e\x42\xb6\x59\x7f\x29\x9c"
    b"\xfc\x65\x7e\x2a\x5f\xcb\x6f\xab\x3a\xd6\xfa\xec\x6c\x44\x19\x8c\x4a\x47\x58\x17")


def _rr(x, n):
    return ((x >> n) | (x << (64 - n))) & M64


def sha512(data):
    """SHA-512 (FIPS 180-4) of bytes: the messages verified here are short (~100 bytes)."""
    h = [0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
         0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179]
    n = len(data)
    pad = 128 - (n + 17) % 128
    if pad == 128:
        pad = 0
    m = bytes(data) + b"\x80" + bytes(pad) + (n * 8).to_bytes(16, "big")
    w = [0] * 16  # the message schedule as a ring of 16 words (not 80: less heap in one piece)
    for o in range(0, len(m), 128):
        for i in range(16):
            w[i] = int.from_bytes(m[o + 8 * i:o + 8 * i + 8], "big")
        a, b, c, d, e, f, g, hh = h
        for i in range(80):
            if i >= 16:
                x = w[(i - 15) & 15]
                y = w[(i - 2) & 15]
                s0 = _rr(x, 1) ^ _rr(x, 8) ^ (x >> 7)
                s1 = _rr(y, 19) ^ _rr(y, 61) ^ (y >> 6)
                w[i & 15] = (w[i & 15] + s0 + w[(i - 7) & 15] + s1) & M64
            t1 = (hh + (_rr(e, 14) ^ _rr(e, 18) ^ _rr(e, 41)) + ((e & f) ^ (~e & g))
                  + _k(i) + w[i & 15]) & M64
            t2 = ((_rr(a, 28) ^ _rr(a, 34) ^ _rr(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))) & M64
            hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & M64, c, b, a, (t1 + t2) & M64
        for i, v in enumerate((a, b, c, d, e, f, g, hh)):
            h[i] = (h[i] + v) & M64
    return b"".join(v.to_bytes(8, "big") for v in h)


def _d():
    return -121665 * pow(121666, P - 2, P) % P


def _add(p, q, d2):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * d2 * t2 % P
    dd = z1 * 2 * z2 % P
    e, f, g, h = b - a, dd - c, dd + c, b + a
    return e * f % P, g * h % P, f * g % P, e * h % P


def _dbl(p):
    x1, y1, z1, _ = p
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    e = h - (x1 + y1) * (x1 + y1) % P
    g = a - b
    f = c + g
    return e * f % P, g * h % P, f * g % P, e * h % P


def _point(s, d):
    # A 32-byte encoding -> extended point, or None if it is not on the curve (RFC 8032 5.1.3).
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    u = (y * y - 1) % P
    v = (d * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    vx2 = v * x * x % P
    if vx2 != u:
        if vx2 != (P - u) % P:
            return None
        x = x * pow(2, (P - 1) // 4, P) % P
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return x, y, 1, x * y % P


def _enc(p):
    x, y, z, _ = p
    zi = pow(z, P - 2, P)
    x = x * zi % P
    y = y * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def verify(pub, msg, sig):
    """True if `sig` (64 bytes) is `pub`'s (32 bytes) Ed25519 signature of `msg`."""
    if len(pub) != 32 or len(sig) != 64:
        return False
    d = _d()
    a = _point(pub, d)
    s = int.from_bytes(sig[32:], "little")
    if a is None or s >= L or _point(sig[:32], d) is None:
        return False
    h = int.from_bytes(sha512(sig[:32] + pub + msg), "little") % L
    d2 = 2 * d % P
    by = 4 * pow(5, P - 2, P) % P
    b = _point(by.to_bytes(32, "little"), d)  # the base point, x even
    na = ((P - a[0]) % P, a[1], 1, (P - a[3]) % P)  # -A
    ba = _add(b, na, d2)
    r = (0, 1, 1, 0)  # the neutral element
    for i in range(255, -1, -1):
        r = _dbl(r)
        bs = (s >> i) & 1
        bh = (h >> i) & 1
        if bs and bh:
            r = _add(r, ba, d2)
        elif bs:
            r = _add(r, b, d2)
        elif bh:
            r = _add(r, na, d2)
    return _enc(r) == bytes(sig[:32])
