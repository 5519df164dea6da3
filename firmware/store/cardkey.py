# Card key (protocol.md "Card key"): the board never stores or sends raw UIDs.
import hashlib


def card_key(site_key, uid):
    """8-byte key = SHA-256(site_key || uid)[:8] (bytes)."""
    h = hashlib.sha256(site_key)
    h.update(uid)
    return h.digest()[:8]


def card_key_hex(site_key, uid):
    import binascii
    return binascii.hexlify(card_key(site_key, uid)).decode()
