"""One connection to a board's raw REPL (mpremote's SerialTransport used as a library), and the
few programs the flash tool runs on the board: versions, file hashes, writes, soft reset."""

from __future__ import annotations

import ast
import os
import stat
import time
from collections.abc import Callable

from tools.flashing import (
    EXIT_NO_MICROPYTHON,
    EXIT_PORT,
    EXIT_VERIFY,
    FlashError,
)

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
CHUNK = 512

HASH_PROGRAM = """import hashlib, binascii
def _h(p, b=bytearray(512)):
    try:
        f = open(p, "rb")
    except OSError:
        return "-"
    h = hashlib.sha256()
    m = memoryview(b)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(m[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
for _p in {paths!r}:
    print("H", _p, _h(_p))
del _h
"""

MKDIR_PROGRAM = """import os
for _d in {dirs!r}:
    try:
        os.mkdir(_d)
    except OSError as e:
        if e.args[0] != 17:
            raise
"""

# A file is written next to its place and renamed over it, so an interrupted copy never leaves a
# half-written module where the firmware imports it.
RENAME_PROGRAM = """import os
try:
    os.rename({tmp!r}, {dest!r})
except OSError:
    os.remove({dest!r})
    os.rename({tmp!r}, {dest!r})
"""


def mpy_version(abi: int) -> tuple[int, int]:
    """(version, sub-version) of sys.implementation._mpy (py/persistentcode.h)."""
    return abi & 0xFF, (abi >> 8) & 3


def check_port(port: str) -> None:
    try:
        st = os.stat(port)
    except FileNotFoundError:
        raise FlashError(
            f"serial port {port} does not exist: is the board plugged in and is this its port? "
            "(Linux: ls /dev/ttyUSB* /dev/ttyACM*; macOS: ls /dev/cu.*)",
            EXIT_PORT,
        ) from None
    except OSError as exc:
        raise FlashError(f"serial port {port}: {exc.strerror}", EXIT_PORT) from None
    if not stat.S_ISCHR(st.st_mode):
        raise FlashError(f"{port} is not a serial port (not a character device)", EXIT_PORT)


class Board:
    def __init__(self, port: str, *, baud: int = 115200, timeout: float = 10.0) -> None:
        check_port(port)
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port
        self.timeout = timeout
        try:
            # A read timeout, so a silent port (on a pty mpremote reads without polling first)
            # ends in our time limits instead of blocking forever.
            self.t = SerialTransport(port, baudrate=baud, timeout=0.5)
        except (TransportError, OSError) as exc:
            raise FlashError(
                f"cannot open serial port {port}: {exc} (is another program, e.g. a serial "
                "monitor, using it? on Linux, is your user in the dialout group?)",
                EXIT_PORT,
            ) from None

    def close(self) -> None:
        try:
            self.t.close()
        except OSError:
            pass

    # -- raw REPL -----------------------------------------------------------------------------
    def _drain(self, seconds: float) -> bytes:
        got = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            n = self.t.serial.in_waiting
            if not n:
                time.sleep(0.02)
                if not self.t.serial.in_waiting:
                    break
                continue
            got += self.t.serial.read(n)
        return got

    def _read_until(self, ending: bytes, seconds: float) -> bytes:
        """Read until `ending` or `seconds` are over (mpremote's read_until only checks its
        timeouts while the line is quiet, so a device that keeps talking would hold it)."""
        ser = self.t.serial
        data = b""
        deadline = time.monotonic() + seconds
        while not data.endswith(ending):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ser.timeout = min(0.2, left)
            data += ser.read(1)
        ser.timeout = 0.5
        return data

    def enter_raw_repl(self) -> None:
        """Interrupt whatever runs, enter the raw REPL and soft-reset the VM (a clean heap for
        the copy; in raw mode a soft reset does not run main.py). Bounded in time, unlike
        mpremote's own, so a port that streams garbage cannot hang us."""
        ser = self.t.serial
        ser.write(b"\r\x03")
        time.sleep(0.1)
        ser.write(b"\x03")
        seen = self._drain(1.0)
        ser.write(b"\r\x01")
        data = self._read_until(RAW_BANNER + b">", self.timeout)
        if not data.endswith(RAW_BANNER + b">"):
            heard = (seen + data)[-120:]
            what = f"it answered {heard!r}" if heard.strip() else "it did not answer"
            raise FlashError(
                f"the device on {self.port} does not speak MicroPython's raw REPL ({what}). "
                "Is MicroPython installed? Write an image first: qadam flash --image "
                "ESP32_GENERIC-<version>.bin --port ... (micropython.org/download); check the "
                "baud rate (--baud) and that nothing else holds the port.",
                EXIT_NO_MICROPYTHON,
            )
        ser.write(b"\x04")  # soft reset
        data = self._read_until(b"soft reboot\r\n", self.timeout)
        data += self._read_until(RAW_BANNER, self.timeout)
        if not data.endswith(RAW_BANNER):
            raise FlashError(
                f"the board on {self.port} did not come back to the raw REPL after a soft reset: "
                f"{data[-200:]!r}",
                EXIT_NO_MICROPYTHON,
            )
        self.t.in_raw_repl = True

    def exec(self, code: str, timeout: float | None = None) -> str:
        from mpremote.transport import TransportError, TransportExecError

        try:
            out, err = self.t.exec_raw(code, timeout=timeout or self.timeout)
        except TransportExecError as exc:  # pragma: no cover - exec_raw does not raise it
            raise FlashError(f"the board failed: {exc.error_output}", EXIT_VERIFY) from None
        except TransportError as exc:
            raise FlashError(
                f"lost the board's raw REPL on {self.port}: {exc}", EXIT_NO_MICROPYTHON
            ) from None
        if err:
            raise FlashError(
                f"the board failed running the flash tool's code:\n{err.decode(errors='replace')}",
                EXIT_VERIFY,
            )
        return out.decode("utf-8", "replace")

    # -- what the flash tool asks -------------------------------------------------------------
    def identify(self) -> tuple[int, str, str]:
        """(sys.implementation._mpy, MicroPython version, machine)."""
        out = self.exec(
            "import sys\n"
            "i = sys.implementation\n"
            "print(repr((getattr(i, '_mpy', 0), '.'.join(str(x) for x in i.version[:3]), "
            "getattr(i, '_machine', sys.platform))))\n"
        )
        try:
            abi, version, machine = ast.literal_eval(out.strip().splitlines()[-1])
        except (ValueError, SyntaxError, IndexError):
            raise FlashError(
                f"unexpected answer from the board: {out!r}", EXIT_NO_MICROPYTHON
            ) from None
        return int(abi), str(version), str(machine)

    def hashes(self, paths: list[str]) -> dict[str, str | None]:
        out = self.exec(HASH_PROGRAM.format(paths=list(paths)), timeout=max(self.timeout, 30))
        found: dict[str, str | None] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "H":
                found[parts[1]] = None if parts[2] == "-" else parts[2]
        missing = [p for p in paths if p not in found]
        if missing:
            raise FlashError(f"the board did not hash {missing[:3]}: {out[-200:]!r}", EXIT_VERIFY)
        return found

    def mkdirs(self, dirs: list[str]) -> None:
        if dirs:
            self.exec(MKDIR_PROGRAM.format(dirs=list(dirs)))

    def remove(self, paths: list[str]) -> None:
        for p in paths:
            self.exec(f"import os\nos.remove({p!r})")

    def write(self, dest: str, data: bytes, progress: Callable[[int], None]) -> None:
        tmp = dest + ".part"
        self.exec(f"_f = open({tmp!r}, 'wb')\n_w = _f.write")
        done = 0
        for i in range(0, len(data), CHUNK):
            chunk = data[i : i + CHUNK]
            self.exec(f"_w({chunk!r})")
            done += len(chunk)
            progress(done)
        self.exec("_f.close()\ndel _f, _w")
        self.exec(RENAME_PROGRAM.format(tmp=tmp, dest=dest))

    def romfs_deploy(self, image_file: str, size: int, sha256: str, partition: int = 0) -> None:
        """Write a ROMFS image into the board's ROM partition exactly as `mpremote romfs deploy`
        does (its code, on this connection), then check the partition's first `size` bytes by
        sha256. Needs MicroPython built with MICROPY_VFS_ROM (docs/flashing.md)."""
        import argparse

        from mpremote.commands import CommandError, _do_romfs_deploy

        class _State:  # the part of mpremote's State that romfs deploy uses
            transport = self.t

            def ensure_raw_repl(self) -> None:
                pass

            def did_action(self) -> None:
                pass

        args = argparse.Namespace(path=image_file, partition=partition, mpy=False)
        try:
            _do_romfs_deploy(_State(), args)
        except CommandError as exc:
            raise FlashError(
                f"romfs deploy: {exc} (the board needs a MicroPython build with ROMFS; "
                "docs/flashing.md)",
                EXIT_VERIFY,
            ) from None
        except SystemExit:  # mpremote exits on an invalid or too big image
            raise FlashError(
                f"romfs deploy: the image ({size} B) is invalid or larger than ROMFS partition "
                f"{partition}",
                EXIT_VERIFY,
            ) from None
        out = self.exec(
            "import vfs, hashlib, binascii\n"
            f"_d = vfs.rom_ioctl(2, {partition})\n"
            f"print('R', binascii.hexlify(hashlib.sha256(bytes(memoryview(_d)[:{size}]))"
            ".digest()).decode())\n",
            timeout=max(self.timeout, 30),
        )
        got = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("R ")), None)
        if got != sha256:
            raise FlashError(
                f"the ROMFS partition does not hold the image that was sent ({got} != {sha256})",
                EXIT_VERIFY,
            )

    def romfs_segments(self) -> list[int]:
        """The sizes of the board's ROMFS segments (vfs.rom_ioctl(1), then each segment's block
        count x block size, as `mpremote romfs query`); [] without ROMFS."""
        out = self.exec(
            "import vfs\n"
            "try:\n"
            " _n = vfs.rom_ioctl(1)\n"
            "except AttributeError:\n"
            " _n = 0\n"
            "for _i in range(max(_n, 0)):\n"
            " _d = vfs.rom_ioctl(2, _i)\n"
            " print('S', _d.ioctl(4, 0) * _d.ioctl(5, 0) if hasattr(_d, 'ioctl') else len(_d))\n"
        )
        return [int(ln.split()[1]) for ln in out.splitlines() if ln.startswith("S ")]

    def soft_reset(self) -> bool:
        """Leave the raw REPL and press Ctrl-D at the friendly REPL: the board soft-reboots and
        runs boot.py and main.py. Returns whether the board said "soft reboot"."""
        ser = self.t.serial
        ser.write(b"\r\x02")
        self._read_until(b">>> ", 3.0)
        self.t.in_raw_repl = False
        ser.write(b"\x04")
        return self._read_until(b"soft reboot\r\n", 5.0).endswith(b"soft reboot\r\n")
