"""A virtual board flashed with the OTA layout (docs/ota.md): two image slots in its flash
(slot_a.rom, slot_b.rom; the flash tool's image in slot a), the slot state (ota.json, written by
the firmware's slots.py) and a bootstrap main.py that picks the slot, mounts its image at /rom and
imports the image's main, as a board with two ROMFS slots does. An update the board downloads
lands in the other slot; a power cycle (start() again) boots whatever ota.json then says.

The VM's heap is the board's heap plus the bigger of the two slot images (the sim holds the
mounted image in its heap, a board in flash; simulator/romfs.py heap_with_image).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from simulator.board import VirtualBoard, firmware_bundle
from simulator.romfs import firmware_image, heap_with_image

# The board's bootstrap (its main.py): runs from the board's filesystem before any image is
# mounted. slots.boot() counts a trial down or rolls it back before the image runs; a download
# the app finished is checked and activated by the running image's ota/check.py before its app
# starts; an image that does not mount or raises makes the board reset (the simulator's runner
# powers it on again on exit code 75), so a broken image uses up its trial boots instead of
# stopping at a prompt.
OTA_MAIN = """\
import os, sys, vfs
import slots
_p = slots.path(slots.boot(slots.wdt_reset()))
del sys.modules["slots"], slots
try:
    _img = bytearray(os.stat(_p)[6])
    with open(_p, "rb") as f:
        f.readinto(_img)
    vfs.mount(vfs.VfsRom(_img), "/rom")
    del _img, f, _p
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

REBOOT_EXIT = 75


def install_ota_layout(flash: Path, image: Path | None = None) -> None:
    """What the flash tool writes for the OTA layout: the image into slot a, slots.py's bytecode
    and the bootstrap. Leaves ota.json alone (a first boot starts from slot a)."""
    flash.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image or firmware_image(), flash / "slot_a.rom")
    shutil.copyfile(firmware_bundle() / "slots.mpy", flash / "slots.mpy")
    (flash / "main.py").write_text(OTA_MAIN)


class OtaBoard(VirtualBoard):
    """A VirtualBoard whose firmware comes from its own flash's slots (romfs mode only)."""

    def write_flash(self, whitelist: bytes | None) -> None:
        super().write_flash(whitelist)
        if not (self.flash / "slot_a.rom").exists():
            install_ota_layout(self.flash)

    def entry(self) -> str:
        return str(self.flash / "main.py")

    def vm_heap(self) -> str:
        slots = [p for p in (self.flash / "slot_a.rom", self.flash / "slot_b.rom") if p.exists()]
        biggest = max(slots, key=lambda p: p.stat().st_size)
        return heap_with_image(self.heap, biggest)

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()
