# The two OTA slots as ROMFS partitions (docs/ota.md, D27-H): on an ESP32 the image runs in place
# from memory-mapped flash, so slot a is ROMFS segment 0 and slot b segment 1 (vfs.rom_ioctl;
# hal/simpart.py in the VM), and ota.json (slots.py) still says which one boots (the bootstrap
# mounts the slot's segment: tools/flashing/otalayout.py PARTS_MAIN). Selected when
# the board has two ROMFS partitions; the file slots (slot_a.rom, slot_b.rom) stay otherwise.
# An image is written only into the slot that neither "act" nor "try" names: erase, program,
# then read back and compared by sha256 before slots.activate() names it; a power cut anywhere
# in between leaves a slot nothing boots, and the check starts again from ota.part.
# Imports nothing of the firmware (the bootstrap runs it before an image is mounted).
import slots

CHUNK = 1024  # programmed and read back 1 KB at a time: a 4 KB buffer is too much for the heap


def _ioctl():
    try:
        from vfs import rom_ioctl
    except ImportError:
        from hal.simpart import rom_ioctl
    return rom_ioctl


def present():
    """The board keeps its slots in ROMFS partitions: it has two segments or more."""
    try:
        return _ioctl()(1) >= 2
    except ImportError:
        return False


def device(slot):
    d = _ioctl()(2, 0 if slot == "a" else 1)
    if isinstance(d, int):
        raise OSError(-d)
    return d


def sha256(d, size):
    import hashlib
    from binascii import hexlify
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    bs = d.ioctl(5, 0)
    at = 0
    while at < size:
        k = min(CHUNK, size - at)
        mv = memoryview(buf)[:k]
        d.readblocks(at // bs, mv, at % bs)
        h.update(mv)
        at += k
    return hexlify(h.digest()).decode()


def install(slot, src, size, sha):
    """Writes the file `src` (`size` bytes) into the slot's partition: erase the blocks it needs,
    program them, read back. -> None when the partition holds exactly the image, else why not."""
    s = slots.load()
    if slot in (s["act"], s.get("try")):
        return "slot"  # never the running or confirmed image
    d = device(slot)
    bs = d.ioctl(5, 0)
    if size > d.ioctl(4, 0) * bs:
        return "size"
    for n in range((size + bs - 1) // bs):
        d.ioctl(6, n)
    buf = bytearray(CHUNK)
    at = 0
    with open(src, "rb") as f:
        while at < size:
            k = f.readinto(buf)
            if not k:
                return "short"
            d.writeblocks(at // bs, memoryview(buf)[:k], at % bs)
            at += k
    return None if sha256(d, size) == sha else "flash"
