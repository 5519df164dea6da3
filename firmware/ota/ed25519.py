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
    # the first 80 primes, from a bytes constant (80 integer objects would sit in the heap).
    return int.from_bytes(_K[8 * i:8 * i + 8], "big")


_K = bytes.fromhex(
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc3956c25bf348b538"
    "59f111f1b605d019923f82a4af194f9bab1c5ed5da6d8118d807aa98a303024212835b0145706fbe"
    "243185be4ee4b28c550c7dc3d5ffb4e272be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235"
    "c19bf174cf692694e49b69c19ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c65"
    "2de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5983e5152ee66dfab"
    "a831c66d2db43210b00327c898fb213fbf597fc7beef0ee4c6e00bf33da88fc2d5a79147930aa725"
    "06ca6351e003826f142929670a0e6e7027b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed"
    "53380d139d95b3df650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353b"
    "a2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30d192e819d6ef5218"
    "d69906245565a910f40e35855771202a106aa07032bbd1b819a4c116b8d2d0c81e376c085141ab53"
    "2748774cdf8eeb9934b0bcb5e19b48a8391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373"
    "682e6ff3d6b2b8a3748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec"
    "90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532bca273eceea26619c"
    "d186b8c721c0c207eada7dd6cde0eb1ef57d4f7fee6ed17806f067aa72176fba0a637dc5a2c898a6"
    "113f9804bef90dae1b710b35131c471b28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc"
    "431d67c49c100d4c4cc5d4becb3e42b6597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817")


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
    w = [0] * 80
    for o in range(0, len(m), 128):
        for i in range(16):
            w[i] = int.from_bytes(m[o + 8 * i:o + 8 * i + 8], "big")
        for i in range(16, 80):
            x = w[i - 15]
            y = w[i - 2]
            s0 = _rr(x, 1) ^ _rr(x, 8) ^ (x >> 7)
            s1 = _rr(y, 19) ^ _rr(y, 61) ^ (y >> 6)
            w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & M64
        a, b, c, d, e, f, g, hh = h
        for i in range(80):
            t1 = (hh + (_rr(e, 14) ^ _rr(e, 18) ^ _rr(e, 41)) + ((e & f) ^ (~e & g))
                  + _k(i) + w[i]) & M64
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
