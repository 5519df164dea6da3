# The bootstrap's side of an update (docs/ota.md): a download the app finished (ota.chk: the
# release's id, version, size, sha256 and signature; ota.part: the image) is checked at the next
# power-on, after the running slot's image is mounted and before its app starts, so the
# verifier works in a heap still in one piece: the image is read back from flash (size,
# sha256), its Ed25519 signature verified with device.json "ota_pub", then it is renamed into
# the slot that is not running and put on trial (slots.activate, device.json "ota_tries"
# boots). A refused image is deleted and the reason kept in ota.err for the status. Every step
# is a rename or an atomic write, and the check starts again from the files after a power cut
# (the image may already be in the slot: it is checked there). On a board whose slots are ROMFS
# partitions (D27-H) the image is copied into the partition instead (partslots.install: erase,
# program, read back) and ota.part removed once the slot is on trial.
import json
import os
import sys

import slots

PART = "ota.part"
CHK = "ota.chk"
ERR = "ota.err"
TRIES = 3  # trial boots of a new image before it is given up


def signed(m):
    """The bytes a release's signature covers (tools/release.py signs the same)."""
    return b"qadam-ota|%s|%d|%s" % (m["ver"].encode(), m["size"], m["sha256"].encode())


def _gone(n):
    try:
        os.remove(n)
    except OSError:
        pass


def verify(path, m, pub):
    """None if the file at `path` is the release `m` signed by `pub` (hex), else why not."""
    import hashlib
    from binascii import hexlify, unhexlify
    h = hashlib.sha256()
    buf = bytearray(512)
    n = 0
    with open(path, "rb") as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
    if n != m["size"] or hexlify(h.digest()).decode() != m["sha256"]:
        return "sha256"
    h = buf = None
    from ota.ed25519 import verify as ed
    try:
        return None if ed(unhexlify(pub), signed(m), unhexlify(m["sig"])) else "signature"
    except ValueError:
        return "signature"


def _parts():
    # The slots are ROMFS partitions (partslots.py, D27-H): two segments or more; in the VM the
    # stand-in's files (hal/simpart.py). Probed here: a board without them imports nothing more.
    try:
        from vfs import rom_ioctl
        return rom_ioctl(1) >= 2
    except ImportError:
        pass
    try:
        os.stat("romfs1.bin")
        return True
    except OSError:
        return False


def run():
    """-> True if a new image was put on trial (the board resets into it), False otherwise."""
    with open(CHK) as f:
        m = json.loads(f.read())
    s = slots.load()
    if s.get("try"):
        _gone(PART)  # partition slots: the image's copy, if a power cut came before its removal
        _gone(CHK)  # activated before a power cut took the rest: nothing left to do
        return False
    with open("device.json") as f:
        cfg = json.loads(f.read())
    slot = "b" if slots.running(s) == "a" else "a"
    src = PART
    try:
        os.stat(PART)
    except OSError:
        src = slots.path(slot)  # renamed into the slot before a power cut
    try:
        why = verify(src, m, cfg.get("ota_pub")) if cfg.get("ota_pub") else "no_key"
    except OSError:
        why = "missing"
    part = _parts()
    if part and not why:  # copied in, read back by sha256; a power cut: again from ota.part
        import partslots
        why = partslots.install(slot, PART, m["size"], m["sha256"])
        for n in ("partslots", "hal.simpart"):
            sys.modules.pop(n, None)
    if why:
        _gone(PART)
        tmp = ERR + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps({"id": m["id"], "err": why}))
        os.rename(tmp, ERR)
        _gone(CHK)
        print("#", "ota", m["ver"], "refused", why)
        return False
    if src == PART and not part:
        _gone(slots.path(slot))
        os.rename(PART, slots.path(slot))
    slots.activate(slot, m["ver"], cfg.get("ota_tries", TRIES))
    _gone(PART)
    _gone(CHK)
    print("#", "ota", m["ver"], "on trial in slot", slot)
    return True
