"""A virtual board with the OTA layout in ROMFS partitions (D27-H), as an ESP32 whose MicroPython
exposes two ROMFS segments: slot a is partition romfs0.bin, slot b romfs1.bin (the firmware's
hal/simpart.py stand-in for vfs.rom_ioctl / esp32.Partition, files of the board's flash), the
slot state ota.json as with the file slots (simulator/ota_board.py). The bootstrap picks the
slot, mounts that partition as VfsRom at /rom (the ESP32 maps it; the VM reads the image's bytes
into its heap) and imports the image's main. An update is written into the other partition by
the running image's ota/check.py (partslots.py: erase, program, read back).
"""

from __future__ import annotations

from pathlib import Path

from simulator.board import firmware_bundle
from simulator.ota_board import OtaBoard
from simulator.romfs import firmware_image, heap_bytes
from tools.flashing.otalayout import BOOT_MODULES, FRESH_STATE, PARTS_MAIN

# MicroPython's partitions-4MiB-romfs.csv gives its one ROMFS partition 0x20000 bytes; the OTA
# layout needs two of them (docs/ota.md "Partitions").
PART_SIZE = 0x20000


def image_size(part: Path) -> int:
    """The ROMFS image's length from its header (what the bootstrap maps), 0 for no image."""
    h = part.read_bytes()[:8]
    if h[:3] != b"\xd2\xcd\x31":
        return 0
    v = 0
    for i in range(3, 8):
        v = (v << 7) | (h[i] & 0x7F)
        if not h[i] & 0x80:
            return i + 1 + v
    return 0


def install_parts_layout(flash: Path, image: Path | None = None, size: int = PART_SIZE) -> None:
    """What `qadam flash --romfs` writes for the OTA layout on two partitions: the image into
    partition 0 (the rest erased, 0xff), partition 1 erased, the bootstrap and the modules it
    runs before an image is mounted."""
    data = (image or firmware_image()).read_bytes()
    if len(data) > size:
        raise ValueError(f"image of {len(data)} B does not fit a {size} B partition")
    flash.mkdir(parents=True, exist_ok=True)
    (flash / "romfs0.bin").write_bytes(data + b"\xff" * (size - len(data)))
    (flash / "romfs1.bin").write_bytes(b"\xff" * size)
    bundle = firmware_bundle()
    for rel in BOOT_MODULES:
        (flash / rel).write_bytes((bundle / rel).read_bytes())
    (flash / "main.py").write_text(PARTS_MAIN)
    (flash / "ota.json").write_bytes(FRESH_STATE)  # as the flash tool: slot a, confirmed


class PartsOtaBoard(OtaBoard):
    """An OtaBoard whose slots are the two ROMFS partitions."""

    def write_flash(self, whitelist: bytes | None) -> None:
        super(OtaBoard, self).write_flash(whitelist)
        if not (self.flash / "romfs0.bin").exists():
            install_parts_layout(self.flash)

    def vm_heap(self) -> str:
        # The board's heap plus the partition the bootstrap reads in (a board maps it; the
        # arithmetic of simulator/romfs.py heap_with_image: the bytes and their GC table bits).
        n = max((self.flash / f"romfs{i}.bin").stat().st_size for i in (0, 1))
        blocks = (n + 31) // 32
        return str(heap_bytes(self.heap) + blocks * 32 + (blocks * 3 + 7) // 8)
