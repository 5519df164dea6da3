"""A virtual board behind a serial port: a MicroPython unix-port VM reachable on a pseudo-terminal,
so the technician tools (tools/flash.py, mpremote, a terminal program) talk to it exactly as to an
ESP32 on /dev/ttyUSB0.

Two pseudo-terminals: the *port* (its slave path, e.g. /dev/pts/7, is what a tool opens) and the
VM's console (the `micropython` process has its stdin/stdout/stderr on that pty's slave). A relay
thread copies bytes between the two masters and plays the parts of a board the unix port lacks:

- power on / soft reboot: with a main.py in the flash directory, run boot.py then main.py (the
  firmware, `hal: sim`); without one, sit at the REPL, as a freshly flashed board does.
- Ctrl-C while the firmware runs interrupts it (SIGINT: KeyboardInterrupt in the VM) and the board
  drops to the REPL, which the relay starts; bytes that arrive meanwhile are held, not lost.
- Ctrl-D at the friendly REPL makes the unix port exit; the relay prints "MPY: soft reboot" and
  boots again (so main.py runs). Ctrl-D on an empty raw-REPL line (mpremote's soft reset) does the
  same but, as on a real board, comes back in the raw REPL without running main.py.

The raw REPL itself (Ctrl-A, raw-paste, Ctrl-D to execute, "OK", output, \\x04, error, \\x04, ">")
is the unix port's own; nothing here re-implements it. The flash directory is the VM's cwd.

    python -m simulator.pty_board FLASH_DIR [--link PATH]
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from simulator.board import LARGE_HEAP, micropython_binary

# Runs the flashed firmware the way a board's boot sequence does: boot.py, then main.py.
BOOT = """import os
for _f in ("boot.py", "main.py"):
    try:
        os.stat(_f)
    except OSError:
        continue
    execfile(_f)
"""
SOFT_REBOOT = b"MPY: soft reboot\r\n"
MAX_PENDING = 1 << 20  # bytes held for a reader that is not reading (a UART would drop them)


class PtyBoardError(RuntimeError):
    pass


class PtyBoard:
    """A virtual board on a pseudo-terminal. `port` is the path a tool opens."""

    def __init__(
        self,
        flash_dir: Path,
        *,
        heap: str = LARGE_HEAP,
        link: Path | None = None,
        echo: Callable[[bytes], None] | None = None,
    ) -> None:
        self.flash = Path(flash_dir)
        self.heap = heap
        self.link = Path(link) if link else None
        self.echo = echo
        self.port = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = "off"  # off | booting | repl | firmware
        self.boots = 0  # how many times the VM was started (power on, soft reboots, interrupts)
        self.firmware_runs = 0
        self._raw = False  # the REPL is in raw mode (tracked from Ctrl-A / Ctrl-B)
        self._want_raw = False
        self._host_m = self._host_s = self._vm_m = -1
        self._to_host = bytearray()
        self._to_vm = bytearray()
        self._held = bytearray()  # host input while the VM is (re)starting
        self._banner = bytearray()
        self._log = bytearray()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> str:
        self._stop.clear()
        self.flash.mkdir(parents=True, exist_ok=True)
        self._host_m, self._host_s = os.openpty()
        tty.setraw(self._host_s)
        os.set_blocking(self._host_m, False)
        self.port = os.ttyname(self._host_s)
        if self.link is not None:
            if self.link.is_symlink() or self.link.exists():
                self.link.unlink()
            self.link.symlink_to(self.port)
        self._boot(raw=False)
        self._thread = threading.Thread(target=self._relay, name="pty-board", daemon=True)
        self._thread.start()
        return str(self.link) if self.link else self.port

    def stop(self) -> None:
        """Power off: the VM is killed (a pulled plug), the port disappears."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._kill_vm()
        for fd in (self._host_m, self._host_s):
            if fd >= 0:
                os.close(fd)
        self._host_m = self._host_s = -1
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()
        self.state = "off"

    def __enter__(self) -> PtyBoard:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what the board printed ---------------------------------------------------------------
    @property
    def output(self) -> str:
        with self._cond:
            return self._log.decode("utf-8", "replace")

    def wait_output(self, text: str, timeout: float = 20.0, start: int = 0) -> int:
        """Wait until `text` appears in the console output after offset `start`; return the
        offset after it."""
        deadline = time.monotonic() + timeout
        needle = text.encode()
        with self._cond:
            while True:
                i = self._log.find(needle, start)
                if i >= 0:
                    return i + len(needle)
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = self._log[-3000:].decode("utf-8", "replace")
                    raise PtyBoardError(f"board did not print {text!r} in {timeout:.0f}s:\n{tail}")
                self._cond.wait(min(left, 0.2))

    def mark(self) -> int:
        with self._cond:
            return len(self._log)

    # -- the VM ---------------------------------------------------------------------------------
    def _boot(self, raw: bool) -> None:
        """Power on / soft reboot: the firmware if there is a main.py (not after a raw-REPL soft
        reset, as on a board), otherwise the REPL (back in raw mode if `raw`)."""
        if not raw and (self.flash / "main.py").is_file():
            self._spawn("firmware")
        else:
            self._spawn("raw" if raw else "repl")

    def _spawn(self, mode: str) -> None:
        args = [micropython_binary(), "-X", f"heapsize={self.heap}"]
        if mode == "firmware":
            args += ["-c", BOOT]
        vm_m, vm_s = os.openpty()
        tty.setraw(vm_s)
        try:
            self.proc = subprocess.Popen(
                args,
                cwd=self.flash,
                stdin=vm_s,
                stdout=vm_s,
                stderr=vm_s,
                close_fds=True,
                start_new_session=True,
            )
        finally:
            os.close(vm_s)
        os.set_blocking(vm_m, False)
        self._vm_m = vm_m
        self._to_vm.clear()
        self._banner.clear()
        self.boots += 1
        self._raw = False
        self._want_raw = mode == "raw"
        if mode == "firmware":
            self.firmware_runs += 1
            self.state = "firmware"
            self._to_vm += self._held
            self._held.clear()
        else:
            self.state = "booting"  # until the REPL prompt shows

    def _kill_vm(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self._vm_m >= 0:
            os.close(self._vm_m)
            self._vm_m = -1

    def _interrupt(self) -> None:
        """Ctrl-C while the firmware runs: KeyboardInterrupt, then the board is at the REPL."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        self.state = "interrupted"
        threading.Timer(3.0, lambda: proc.poll() is None and proc.kill()).start()

    def _vm_exited(self) -> None:
        was, raw = self.state, self._raw
        if self.proc is not None:
            self.proc.wait(5)
        os.close(self._vm_m)
        self._vm_m = -1
        if was in ("firmware", "interrupted"):
            # main.py ended (interrupted, crashed or quit): the board sits at the REPL.
            self._spawn("repl")
            return
        # The REPL exited: Ctrl-D (soft reset) or sys.exit(). Reboot as a board does.
        self._send_host(SOFT_REBOOT)
        self._boot(raw=raw)

    # -- the relay ----------------------------------------------------------------------------
    def _send_host(self, data: bytes) -> None:
        with self._cond:
            self._log += data
            del self._log[: max(0, len(self._log) - MAX_PENDING)]
            self._cond.notify_all()
        if self.echo is not None:
            self.echo(data)
        self._to_host += data
        if len(self._to_host) > MAX_PENDING:
            del self._to_host[: len(self._to_host) - MAX_PENDING]

    def _from_host(self, data: bytes) -> None:
        if self.state in ("booting", "interrupted"):
            self._held += data
            return
        if self.state == "firmware":
            i = data.find(b"\x03")
            if i < 0:
                self._to_vm += data
                return
            self._to_vm += data[:i]
            self._held += data[i + 1 :]
            self._interrupt()
            return
        for b in data:  # state == "repl"
            if b == 1:
                self._raw = True
            elif b == 2:
                self._raw = False
        self._to_vm += data

    def _from_vm(self, data: bytes) -> None:
        if self.state == "booting":
            self._banner += data
            if b">>> " not in self._banner:
                if not self._want_raw:
                    self._send_host(data)
                return
            if not self._want_raw:
                self._send_host(data)
            self.state = "repl"
            if self._want_raw:
                self._to_vm += b"\x01"  # back in the raw REPL, as after a raw-mode soft reset
                self._raw = True
            self._from_host(bytes(self._held))
            self._held.clear()
            return
        self._send_host(data)

    def _relay(self) -> None:
        while not self._stop.is_set():
            rlist = [self._host_m] + ([self._vm_m] if self._vm_m >= 0 else [])
            wlist = []
            if self._to_host:
                wlist.append(self._host_m)
            if self._to_vm and self._vm_m >= 0:
                wlist.append(self._vm_m)
            try:
                readable, writable, _ = select.select(rlist, wlist, [], 0.05)
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                raise
            if self._host_m in readable:
                try:
                    data = os.read(self._host_m, 4096)
                except OSError as exc:  # EIO: no slave open (cannot happen: we hold one)
                    if exc.errno not in (errno.EIO, errno.EAGAIN):
                        raise
                    data = b""
                if data:
                    self._from_host(data)
            if self._vm_m >= 0 and self._vm_m in readable:
                try:
                    data = os.read(self._vm_m, 4096)
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if data:
                    self._from_vm(data)
                elif self.proc is not None and self.proc.poll() is not None:
                    self._vm_exited()
            elif self._vm_m >= 0 and self.proc is not None and self.proc.poll() is not None:
                # exited without our noticing EOF yet: drain and reboot on the next round
                try:
                    data = os.read(self._vm_m, 4096)
                except OSError:
                    data = b""
                if data:
                    self._from_vm(data)
                else:
                    self._vm_exited()
            for fd, buf in ((self._host_m, self._to_host), (self._vm_m, self._to_vm)):
                if fd >= 0 and buf and fd in writable:
                    try:
                        n = os.write(fd, buf[:4096])
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        if exc.errno != errno.EIO:
                            raise
                        continue
                    del buf[:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("flash", type=Path, help="the board's flash directory (created if missing)")
    p.add_argument("--link", type=Path, help="also make this path a symlink to the port")
    p.add_argument("--heap", default=LARGE_HEAP)
    args = p.parse_args(argv)
    board = PtyBoard(args.flash, heap=args.heap, link=args.link)
    port = board.start()
    print(f"virtual board on {port} (flash: {args.flash}); Ctrl-C powers it off", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
