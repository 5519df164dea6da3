# Keys of alternative identification (docs/altid.md, docs/decisions.md D29-J). Like card keys
# (store.cardkey) they are derived from the school's site key, so a board verifies a QR code or a
# PIN offline with nothing but the site key and its whitelist:
#   person key  PK  = SHA-256(site_key || "qadam-altid-person:" || number)[0:8]
#   QR key      QK  = HMAC-SHA256(site_key, "qadam-altid-qr:" || PK)
#   QR tag          = HMAC-SHA256(QK, "QR" || PK || step as u32 big-endian)[0:8]
#   PIN key         = SHA-256(site_key || "qadam-altid-pin:" || PK || pin)[0:8]
# `number` is the pupil number (people.id in decimal ASCII). The prefixes are longer than any
# card UID (10 bytes at most), so no card's key can equal a person key or a PIN key.
# The cloud computes the same (cloud/altid/keys.py); tests/altid holds both to one vector.
import hashlib

STEP_S = 30  # a QR code's time step


def person_key(site_key, number):
    h = hashlib.sha256(site_key)
    h.update(b"qadam-altid-person:")
    h.update(number)
    return h.digest()[:8]


def pin_key(site_key, pk, pin):
    h = hashlib.sha256(site_key)
    h.update(b"qadam-altid-pin:")
    h.update(pk)
    h.update(pin)
    return h.digest()[:8]


def hmac256(key, a, b=b""):
    # HMAC-SHA256 (RFC 2104) of a || b; the ports have no hmac module. Keys here are <= 64 bytes.
    k = bytearray(64)
    k[:len(key)] = key
    for i in range(64):
        k[i] ^= 0x36
    h = hashlib.sha256(k)
    h.update(a)
    h.update(b)
    inner = h.digest()
    for i in range(64):
        k[i] ^= 0x6A  # 0x36 ^ 0x5C: from the inner pad to the outer one
    h = hashlib.sha256(k)
    h.update(inner)
    return h.digest()


def qr_key(site_key, pk):
    return hmac256(site_key, b"qadam-altid-qr:", pk)


def qr_tag(qk, pk, step):
    m = bytearray(14)
    m[0:2] = b"QR"
    m[2:10] = pk
    for i in range(4):
        m[10 + i] = (step >> (24 - 8 * i)) & 0xFF
    return hmac256(qk, m)[:8]


def same(a, b):
    # Compare two equal-length byte strings in time independent of where they differ.
    d = len(a) ^ len(b)
    if d:
        return False
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
