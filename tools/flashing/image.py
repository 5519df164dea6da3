"""Erase a board and write a MicroPython image with esptool (5.x command names); esptool's
write-flash verifies what it wrote (it asks the chip for the MD5 of the written region and
compares it with the file's), and the tool insists that it did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

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
    """One esptool session: erase the whole flash, write the image, verify it. One session, so a
    board without auto-reset enters download mode once (BOOT held, RESET pressed): after an
    erase-flash run esptool resets the chip, which then boots from its erased flash and would
    need the buttons again for a second run (D25-H)."""
    offset = IMAGE_OFFSET[chip]
    return [
        [
            esptool,
            "--chip",
            chip,
            "--port",
            port,
            "--baud",
            str(baud),
            "write-flash",
            "--erase-all",
            "-z",
            f"0x{offset:x}",
            str(image),
        ],
    ]


FATAL = "A fatal error occurred: "
VERIFIED = "Hash of data verified."
# What esptool 5 prints worth passing on to the technician when a step succeeds.
SUMMARY = ("Connected to ", "Chip type:", "Wrote ", VERIFIED)
PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")


def _option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1] if name in cmd else "?"


def _cause(out: str) -> str:
    """esptool's own one-line reason ("A fatal error occurred: ..."), else its last words."""
    for line in reversed(out.splitlines()):
        if FATAL in line:
            return line.split(FATAL, 1)[1].strip()
    words = [ln.strip() for ln in out.splitlines() if ln.strip().strip(".")]
    return words[-1] if words else "it printed nothing"


def _hint(cause: str, port: str, chip: str) -> str:
    """What the technician does about the usual failures (esptool 5.6 wording)."""
    if cause.startswith("Failed to connect to"):
        return (
            f"; no {chip.upper()} ROM bootloader answered on {port}: put the board in download "
            "mode (hold BOOT/IO0, press and release EN/RESET, release BOOT) and run again; "
            "check --port and that the USB cable carries data"
        )
    if "Wrong chip argument" in cause or "Wrong --chip argument" in cause:
        return f"; the board config or --chip says {chip}: use the config for this board"
    if cause.startswith("MD5 of file does not match"):
        return (
            "; the flash does not read back what was written (verify failed): run again, "
            "with a lower --image-baud (e.g. 115200); if it fails again the board's flash is faulty"
        )
    return ""


def _run(cmd: list[str], stream: TextIO) -> tuple[int, str]:
    """Run esptool; its "Writing at ... NN.N%" lines become progress on `stream` (redrawn on a
    terminal, every 10% otherwise), so a 30 s write is not silence. Returns (exit code, output)."""
    tty = stream.isatty()
    shown = -10.0
    lines: list[str] = []
    with subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # each line as esptool prints it
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            found = PERCENT.search(line) if line.startswith("Writing at") else None
            if found is None:
                continue
            pct = float(found.group(1))
            if tty:
                stream.write(f"\r  esptool: writing the image {pct:5.1f}%\x1b[K")
                shown = pct
            elif pct >= shown + 10 or pct >= 100.0 > shown:
                stream.write(f"  esptool: writing the image {pct:5.1f}%\n")
                shown = pct
            stream.flush()
        if tty and shown >= 0:
            stream.write("\n")  # the last bar stays
            stream.flush()
        rc = proc.wait()
    return rc, "".join(lines)


def write_image(commands: list[list[str]], log, stream: TextIO | None = None) -> None:
    """Run the esptool steps in order; a failure is one line: the step, esptool's reason and
    what to do. write-flash must report that it verified the written data. Progress of the
    write goes to `stream` (stderr)."""
    for cmd in commands:
        step = next(w for w in cmd if w.endswith("-flash"))
        log(" ".join(cmd))
        started = time.monotonic()
        rc, out = _run(cmd, stream or sys.stderr)
        took = time.monotonic() - started
        if rc != 0:
            cause = _cause(out)
            raise FlashError(
                f"esptool {step} failed (exit {rc}): {cause}"
                + _hint(cause, _option(cmd, "--port"), _option(cmd, "--chip")),
                EXIT_ESPTOOL,
            )
        if step == "write-flash" and VERIFIED not in out:
            raise FlashError(
                f"esptool write-flash did not verify the image it wrote (no {VERIFIED!r} in "
                f"its output: {_cause(out)}); nothing after it was done",
                EXIT_ESPTOOL,
            )
        for line in out.splitlines():
            if line.strip().startswith(SUMMARY):
                log(f"  {line.strip()}")
        log(f"  {step} done in {took:.1f} s")
