"""Erase a board and write a MicroPython image with esptool (5.x command names)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tools.flashing import EXIT_CONFIG, EXIT_ESPTOOL, FlashError

# Where the MicroPython image goes (micropython.org/download: "esptool.py ... write_flash -z
# 0x1000" for the ESP32 and ESP32-S2, 0 for the chips whose ROM loads the bootloader from 0).
IMAGE_OFFSET = {
    "esp32": 0x1000,
    "esp32s2": 0x1000,
    "esp32s3": 0x0,
    "esp32c3": 0x0,
    "esp32c6": 0x0,
}


def check_image(image: Path, chip: str | None) -> str:
    """Refuse an image or chip that cannot be flashed; return the chip."""
    if not chip:
        raise FlashError(
            '--image needs the chip: give a board config with "chip" or --chip', EXIT_CONFIG
        )
    if chip not in IMAGE_OFFSET:
        raise FlashError(
            f"cannot place a MicroPython image on chip {chip!r} "
            f"(known: {', '.join(sorted(IMAGE_OFFSET))})",
            EXIT_CONFIG,
        )
    if not image.is_file():
        raise FlashError(f"image {image} does not exist", EXIT_CONFIG)
    with image.open("rb") as f:
        head = f.read(1)
    if head != b"\xe9":  # the ESP image magic byte
        raise FlashError(
            f"{image} is not an ESP32 firmware image (it does not start with 0xE9); download "
            "the .bin for your board from micropython.org/download",
            EXIT_CONFIG,
        )
    return chip


def esptool_commands(
    esptool: str, port: str, chip: str, image: Path, baud: int = 460800
) -> list[list[str]]:
    offset = IMAGE_OFFSET[chip]
    return [
        [esptool, "--chip", chip, "--port", port, "erase-flash"],
        [
            esptool,
            "--chip",
            chip,
            "--port",
            port,
            "--baud",
            str(baud),
            "write-flash",
            "-z",
            f"0x{offset:x}",
            str(image),
        ],
    ]


def write_image(commands: list[list[str]], log) -> None:
    for cmd in commands:
        log(" ".join(cmd))
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            out = (result.stderr.strip() + "\n" + result.stdout.strip()).strip()
            tail = "\n".join(out.splitlines()[-6:])
            step = next(w for w in cmd if w.endswith("-flash"))
            raise FlashError(
                f"esptool {step} failed (exit {result.returncode}):\n{tail}", EXIT_ESPTOOL
            )
