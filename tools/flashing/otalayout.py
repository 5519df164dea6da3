"""`qadam flash --romfs --ota`: the OTA layout on two ROMFS partitions (docs/ota.md
"Partitions", D27-H). Slot a is ROMFS segment 0, slot b segment 1 (firmware/partslots.py); the
flash tool deploys the image into segment 0 and puts the bootstrap below on the filesystem.

MicroPython's own ESP32 builds expose one ROMFS segment at most: the port's vfs.rom_ioctl looks
up the first data partition labelled "romfs" (ports/esp32/esp32_partition.c) and only the
partitions-4MiB-romfs.csv boards have one (0x20000 bytes). Two slots need a MicroPython built
with a partition table holding two ROMFS partitions and a rom_ioctl that answers 2 segments. So
before anything is written: the image given with --image must carry two such partitions in its
partition table (read offline), and the board must answer vfs.rom_ioctl(1) >= 2 with both
segments big enough for the image (asked over the REPL before the claim is traded or a byte is
written)."""

from __future__ import annotations

import struct
from pathlib import Path

from tools.flashing import EXIT_CONFIG, EXIT_VERIFY, FlashError

# The bootstrap (main.py on the board's filesystem). slots comes from the filesystem before an
# image is mounted and is dropped again (the image has its own); MicroPython mounted segment 0
# at /rom by itself, the bootstrap mounts the slot's segment there instead (slot a: segment 0,
# b: 1, as partslots.py). Written out here and short: every module loaded before the app leaves
# its names in the heap for good, and this script's own bytecode stays while the app runs
# (D27-H). sys.exit() ends main.py: the board soft-resets (the simulator's runner powers it on
# again on exit code 75), and the next boot picks the slot again. The simulator runs the same
# text (simulator/ota_parts_board.py); its VM has no vfs.rom_ioctl and no memory map, so there
# the partition file of hal/simpart.py is read into the heap (the VM's heap is the board's plus
# the partition's size).
PARTS_MAIN = """\
import os, sys, vfs
import slots
_i = "ab".index(slots.boot(slots.wdt_reset()))
del sys.modules["slots"], slots
try:
    try:  # MicroPython mounted ROMFS segment 0 at /rom by itself
        vfs.umount("/rom")
    except OSError:
        pass
    try:  # the slot's partition (esp32.Partition), VfsRom runs it from the memory map
        _seg = vfs.rom_ioctl(2, _i)
    except AttributeError:  # the simulator's VM has neither: hal/simpart.py's file, read in
        _seg = bytearray(os.stat("romfs%d.bin" % _i)[6])
        with open("romfs%d.bin" % _i, "rb") as f:
            f.readinto(_seg)
        del f
    if isinstance(_seg, int):
        raise OSError(-_seg)
    vfs.mount(vfs.VfsRom(_seg), "/rom")
    del _seg, _i
    sys.path[:0] = ["/rom", "/rom/lib"]
    import gc
    gc.collect()
    if "ota.chk" in os.listdir():  # a downloaded release: checked now, in an empty heap
        import ota.check
        if ota.check.run():
            sys.exit(75)  # it is on trial: reset into it
        for _n in ("ota.check", "ota.ed25519", "slots", "ota"):
            sys.modules.pop(_n, None)
        del ota, _n
        gc.collect()
    import main
except Exception as e:  # an image that does not mount or whose app raises: reset
    sys.print_exception(e)
    sys.exit(75)
"""

# ota.json (firmware/slots.py) after flashing: slot a, the image just deployed, confirmed.
FRESH_STATE = b'{"act": "a", "try": null, "left": 0, "ver": {}, "rb": null}'

# The bundle's modules the bootstrap imports from the filesystem.
BOOT_MODULES = ("slots.mpy",)

NEEDED = (
    "the OTA layout needs two ROMFS partitions and a MicroPython whose vfs.rom_ioctl exposes both "
    "(MicroPython's own builds expose one at most): flash a qadam build of MicroPython with the "
    'two-ROMFS partition table (docs/ota.md "Partitions") with --image first'
)

PART_TABLE_AT = 0x8000  # ESP-IDF's default CONFIG_PARTITION_TABLE_OFFSET
ENTRY = struct.Struct("<2sBBII16sI")  # magic, type, subtype, offset, size, label, flags
TYPE_DATA = 1


def image_partitions(image: Path, image_offset: int) -> list[tuple[str, int, int, int]]:
    """The partition table inside a MicroPython .bin written at `image_offset` (0x1000 on the
    ESP32): [(label, type, subtype, size)]; [] when the file has none there."""
    data = image.read_bytes()
    at = PART_TABLE_AT - image_offset
    out = []
    while 0 <= at and at + ENTRY.size <= len(data):
        magic, typ, sub, _off, size, label, _flags = ENTRY.unpack_from(data, at)
        if magic != b"\xaa\x50":  # 0xebeb: the table's MD5 entry; 0xffff: the end
            break
        out.append((label.rstrip(b"\0").decode("ascii", "replace"), typ, sub, size))
        at += ENTRY.size
    return out


def check_image_layout(image: Path, image_offset: int, image_size: int) -> None:
    """Offline, before esptool runs: the MicroPython image carries two ROMFS partitions (data
    partitions labelled romfs...) that each hold the firmware image."""
    parts = image_partitions(image, image_offset)
    roms = [
        (lb, size) for lb, typ, _sub, size in parts if typ == TYPE_DATA and lb.startswith("romfs")
    ]
    if len(roms) < 2:
        found = ", ".join(f"{lb} ({size} B)" for lb, size in roms) or "none"
        raise FlashError(f"{image}: ROMFS partitions: {found}. {NEEDED}", EXIT_CONFIG)
    small = [lb for lb, size in roms[:2] if size < image_size]
    if small:
        raise FlashError(
            f"{image}: ROMFS partition {small[0]} is smaller than the firmware image "
            f"({image_size} B)",
            EXIT_CONFIG,
        )


def check_board_layout(board, image_size: int) -> list[int]:
    """On the board, before anything is written: two ROMFS segments or more, each at least the
    image's size. -> the segments' sizes."""
    sizes = board.romfs_segments()
    if len(sizes) < 2:
        raise FlashError(f"the board has {len(sizes)} ROMFS partition(s). {NEEDED}", EXIT_VERIFY)
    for i, size in enumerate(sizes[:2]):
        if size < image_size:
            raise FlashError(
                f"ROMFS partition {i} has {size} B, the firmware image {image_size} B",
                EXIT_VERIFY,
            )
    return sizes
