"""The esptool path of `qadam flash` (erase, write the MicroPython image, verify) against a protocol
peer: PyPI `esp32-mock-bootloader` answers the ESP32 ROM bootloader's SLIP protocol (sync, chip
detection, the stub upload, ERASE_FLASH, FLASH_DEFL_*, SPI_FLASH_MD5) on a pseudo-terminal, and
keeps a 4 MB flash in memory. The real esptool 5 runs as `qadam flash` runs it; what the mock's
flash holds afterwards is read from the mock itself, not through esptool.

The mock's own server loop ends a session 3 s after a write and forgets the stub (a chip reset it
cannot see on a pty), so the wrapper below keeps one session for the mock's life, as a chip that
stays in its bootloader does; `--faulty` flips one bit of every written block, as a failing flash
chip would; SIGUSR1 dumps the flash to a file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import flash
from tools.cli import main
from tools.flashing import EXIT_ESPTOOL, EXIT_NO_MICROPYTHON, FlashError
from tools.flashing import image as esp

MOCK = r"""
import os, signal, sys
from esp32_mock_bootloader import server

port_file, dump_file, chip = sys.argv[1:4]
faulty, once = sys.argv[4] == "1", sys.argv[5] == "1"
server._FLASH_END_IDLE_SEC = 1e9  # one session for the mock's life (see the test's docstring)

if faulty:
    def _flip(image, start):
        if start + 100 < len(image.data):
            image.data[start + 100] ^= 0x10
    _plain, _defl = server.FlashImage.write_plain_block, server.FlashImage.write_defl_block
    def _write_plain(self, payload):
        start = self._plain_offset
        _plain(self, payload)
        _flip(self, start)
    def _write_defl(self, payload):
        start = self._defl_offset
        _defl(self, payload)
        _flip(self, start)
    server.FlashImage.write_plain_block = _write_plain
    server.FlashImage.write_defl_block = _write_defl

if once:
    # A board without the auto-reset circuit: the technician held BOOT and pressed RESET once.
    # Once the flash was touched, esptool's reset (or the next run) leaves download mode: the
    # chip boots from its flash instead and no longer answers the bootloader's SYNC.
    _touched = []
    _erase, _begin = server.FlashImage.erase_all, server.FlashImage.begin_defl
    def _erase_all(self):
        _touched.append(1)
        _erase(self)
    def _begin_defl(self, payload):
        _touched.append(1)
        _begin(self, payload)
    server.FlashImage.erase_all = _erase_all
    server.FlashImage.begin_defl = _begin_defl
    _sync = server.make_sync_response
    def _sync_once(*, stub=False):
        return b"" if _touched else _sync(stub=stub)
    server.make_sync_response = _sync_once

def _dump(*_):
    with open(dump_file + ".part", "wb") as f:
        f.write(server.get_flash_image().data)
    os.replace(dump_file + ".part", dump_file)

signal.signal(signal.SIGUSR1, _dump)
server.run_pty_server(None, port_file, chip)
"""

OFFSET = 0x1000  # where a MicroPython image goes on an ESP32 (tools/flashing/image.py)
MARK = 0x300000  # something written before the flash, which the erase must remove


class Mock:
    def __init__(
        self, tmp: Path, chip: str = "esp32", faulty: bool = False, once: bool = False
    ) -> None:
        script = tmp / "mock_bootloader.py"
        script.write_text(MOCK)
        self.port_file = tmp / "mock.port"
        self.dump_file = tmp / "mock.flash"
        self.log = (tmp / "mock.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(self.port_file),
                str(self.dump_file),
                chip,
                "1" if faulty else "0",
                "1" if once else "0",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not (self.port_file.exists() and self.port_file.read_text().startswith("/dev/")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the mock bootloader did not start: {self.log.name}")
            time.sleep(0.05)
        self.port = self.port_file.read_text().strip()

    def flash(self) -> bytes:
        """The mock's whole flash, as it holds it now."""
        self.dump_file.unlink(missing_ok=True)
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not self.dump_file.exists():
            assert time.monotonic() < deadline, "the mock did not dump its flash"
            time.sleep(0.05)
        return self.dump_file.read_bytes()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def mock(tmp_path):
    m = Mock(tmp_path)
    yield m
    m.stop()


def fake_image(path: Path, size: int) -> Path:
    """An image shaped like MicroPython's: the ESP image byte 0xE9 first, then code-like bytes
    (random runs and repeats, so it compresses somewhat, as firmware does)."""
    rnd = random.Random(size)
    out = bytearray(b"\xe9\x03\x02\x20")
    while len(out) < size:
        out += rnd.randbytes(rnd.randrange(16, 512))
        out += bytes([rnd.randrange(256)]) * rnd.randrange(8, 256)
    path.write_bytes(bytes(out[:size]))
    return path


def esptool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([flash._tool("esptool"), *args], capture_output=True, text=True)


def qadam_flash(port: str, image: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["flash", "--port", port, "--image", str(image), "--out", str(tmp_path / "out"),
            *extra]  # fmt: skip


def test_qadam_flash_erases_writes_and_verifies_an_image_on_a_rom_bootloader(
    mock, tmp_path, capsys
):
    """The full esptool path of `qadam flash --image` on a ROM-protocol peer: the erase removes
    what was on the flash, the image lands at 0x1000 byte for byte, the rest stays erased, and
    esptool's MD5 verification ran. Then the tool looks for MicroPython's raw REPL, which a
    bootloader mock does not run: exit 4 with that reason, after the image was written."""
    image = fake_image(tmp_path / "ESP32_GENERIC-fake.bin", 1_500_000)  # ~ a real image's size
    marked = esptool("--chip", "esp32", "--port", mock.port, "write-flash", hex(MARK),
                     str(fake_image(tmp_path / "old.bin", 4096)))  # fmt: skip
    assert marked.returncode == 0, marked.stdout + marked.stderr
    assert mock.flash()[MARK : MARK + 4] == b"\xe9\x03\x02\x20"

    started = time.monotonic()
    rc = main(qadam_flash(mock.port, image, tmp_path, "--chip", "esp32", "--timeout", "2"))
    took = time.monotonic() - started
    out, err = capsys.readouterr()

    data = mock.flash()
    img = image.read_bytes()
    assert data[OFFSET : OFFSET + len(img)] == img
    assert data[:OFFSET] == b"\xff" * OFFSET
    assert set(data[OFFSET + len(img) :]) == {0xFF}  # the old data at MARK was erased
    lines = out.splitlines()
    assert f"--chip esp32 --port {mock.port} --baud 460800 write-flash --erase-all -z 0x1000 " \
        f"{image}" in out  # fmt: skip
    assert "  Hash of data verified." in lines
    assert any(ln.startswith("  Wrote 1500000 bytes") for ln in lines)
    progress = [ln for ln in err.splitlines() if ln.startswith("  esptool: writing the image")]
    assert len(progress) >= 5 and progress[-1] == "  esptool: writing the image 100.0%"
    assert rc == EXIT_NO_MICROPYTHON
    assert f"the device on {mock.port} does not speak MicroPython's raw REPL" in err
    print(f"\n[figure] qadam flash --image, 1,500,000 B over the mock ROM bootloader: esptool "
          f"steps {[ln.strip() for ln in lines if 'done in' in ln]}; whole run to the raw-REPL "
          f"refusal {took:.1f} s (2 s of it waiting for a REPL)")  # fmt: skip


def test_a_flash_that_reads_back_wrong_fails_verification_in_one_line(tmp_path, capsys):
    """A flash chip that stores a wrong bit: esptool's MD5 check after write-flash fails, and
    `qadam flash` stops there (exit 8, nothing copied) with one line saying the verify failed."""
    m = Mock(tmp_path, faulty=True)
    try:
        image = fake_image(tmp_path / "fw.bin", 64 * 1024)
        rc = main(qadam_flash(m.port, image, tmp_path, "--chip", "esp32"))
        out, err = capsys.readouterr()
        assert m.flash()[OFFSET : OFFSET + len(image.read_bytes())] != image.read_bytes()
    finally:
        m.stop()
    assert rc == EXIT_ESPTOOL
    assert err.startswith("  esptool: writing the image")  # progress, then one line
    err = "".join(ln for ln in err.splitlines(True) if not ln.startswith("  esptool: writing"))
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        "error: esptool write-flash failed (exit 2): MD5 of file does not match data in flash!; "
        "the flash does not read back what was written (verify failed)"
    )
    assert "Hash of data verified." not in out
    assert "raw REPL" not in out + err  # it stopped at the image


def test_a_board_in_download_mode_once_gets_its_image(tmp_path, capsys):
    """A board without auto-reset (the technician holds BOOT and presses RESET once) answers the
    bootloader for one esptool session only: erase, write and verify must be that one session.
    (Two esptool runs, an erase-flash then a write-flash, found no bootloader the second time.)"""
    m = Mock(tmp_path, once=True)
    try:
        image = fake_image(tmp_path / "fw.bin", 64 * 1024)
        rc = main(qadam_flash(m.port, image, tmp_path, "--chip", "esp32", "--timeout", "1"))
        out, err = capsys.readouterr()
        data = m.flash()
    finally:
        m.stop()
    assert data[OFFSET : OFFSET + 64 * 1024] == image.read_bytes()
    assert "  Hash of data verified." in out.splitlines()
    assert rc == EXIT_NO_MICROPYTHON, err  # the image is on; the mock then runs no MicroPython


def test_the_wrong_chip_is_named_in_one_line(tmp_path, capsys):
    """The board is an ESP32-S3, the config says esp32: esptool refuses at connect, before the
    erase, and the technician reads both chips in one line."""
    m = Mock(tmp_path, chip="esp32s3")
    try:
        image = fake_image(tmp_path / "fw.bin", 4096)
        rc = main(qadam_flash(m.port, image, tmp_path, "--chip", "esp32"))
        err = capsys.readouterr().err
        assert set(m.flash()) == {0xFF}  # not erased, not written
    finally:
        m.stop()
    assert rc == EXIT_ESPTOOL
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err == (
        "error: esptool write-flash failed (exit 2): This chip is ESP32-S3, not ESP32. Wrong "
        "chip argument?; the board config or --chip says esp32: use the config for this board\n"
    )


@pytest.fixture(params=["silent", "micropython"])
def not_a_bootloader(request, tmp_path):
    """A port where no ROM bootloader answers: nothing at all (a board without power or in a
    crash loop), or a board running MicroPython that was not put in download mode."""
    if request.param == "silent":
        master, slave = os.openpty()
        yield os.ttyname(slave)
        os.close(master)
        os.close(slave)
    else:
        from simulator.pty_board import PtyBoard

        board = PtyBoard(tmp_path / "board")
        board.start()
        board.wait_output(">>> ", 10)
        yield board.port
        board.stop()


def test_no_bootloader_on_the_port_is_one_clear_line(not_a_bootloader, tmp_path, capsys):
    image = fake_image(tmp_path / "fw.bin", 4096)
    rc = main(qadam_flash(not_a_bootloader, image, tmp_path, "--chip", "esp32"))
    err = capsys.readouterr().err
    assert rc == EXIT_ESPTOOL
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: esptool write-flash failed (exit 2): Failed to connect to ESP32")
    assert err.endswith(
        f"; no ESP32 ROM bootloader answered on {not_a_bootloader}: put the board in download "
        "mode (hold BOOT/IO0, press and release EN/RESET, release BOOT) and run again; check "
        "--port and that the USB cable carries data\n"
    )


def test_a_write_that_esptool_did_not_verify_is_refused(tmp_path):
    """The tool insists on esptool's verification: a write-flash that exits 0 without saying it
    verified the data (an esptool told to skip it, another version's wording) stops the flash."""
    fake = tmp_path / "esptool"
    fake.write_text("#!/bin/sh\necho 'Wrote 4096 bytes at 0x00001000 in 0.1 seconds.'\n")
    fake.chmod(0o755)
    image = fake_image(tmp_path / "fw.bin", 4096)
    cmds = esp.esptool_commands(str(fake), "/dev/null", "esp32", image)
    logged: list[str] = []
    with pytest.raises(FlashError) as info:
        esp.write_image(cmds, logged.append)
    assert info.value.code == EXIT_ESPTOOL
    assert str(info.value) == (
        "esptool write-flash did not verify the image it wrote (no 'Hash of data verified.' in "
        "its output: Wrote 4096 bytes at 0x00001000 in 0.1 seconds.); nothing after it was done"
    )


class OneSerialPort:
    """The one port a technician plugs in: the ROM bootloader answers on it until esptool's
    write is done, then (the board's reset into the new image) MicroPython does. A relay between
    this pty and the current backend's port; `switch` is the reset."""

    def __init__(self, backend: str) -> None:
        import threading
        import tty

        self._host_m, self._host_s = os.openpty()
        tty.setraw(self._host_s)
        self.port = os.ttyname(self._host_s)
        self._lock = threading.Lock()
        self._backend = self._open(backend)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    @staticmethod
    def _open(path: str) -> int:
        import tty

        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        return fd

    def switch(self, backend: str) -> None:
        with self._lock:
            os.close(self._backend)
            self._backend = self._open(backend)

    def _relay(self) -> None:
        import select

        while not self._stop.is_set():
            with self._lock:
                back = self._backend
                ready, _, _ = select.select([self._host_m, back], [], [], 0.05)
                for src, dst in ((self._host_m, back), (back, self._host_m)):
                    if src in ready:
                        try:
                            data = os.read(src, 4096)
                        except OSError:
                            continue
                        while data:
                            data = data[os.write(dst, data) :]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for fd in (self._backend, self._host_m, self._host_s):
            os.close(fd)


def test_one_port_from_bootloader_to_files_on_the_board(mock, tmp_path, capsys, monkeypatch):
    """`qadam flash --image --config <board config>` as on a new board, on one port: erase,
    write and verify the image over the ROM protocol, then (the board resets into MicroPython:
    here a virtual board on the same port) the raw REPL, the bundle copied and verified by
    sha256, the soft reset. Exit 0."""
    from simulator.pty_board import PtyBoard

    board = PtyBoard(tmp_path / "board")
    board.start()
    board.wait_output(">>> ", 10)
    port = OneSerialPort(mock.port)
    write_image = esp.write_image

    def write_then_reset(commands, log):
        write_image(commands, log)
        port.switch(board.port)  # esptool's --after hard-reset: the new image boots

    monkeypatch.setattr(esp, "write_image", write_then_reset)
    image = fake_image(tmp_path / "ESP32_GENERIC-fake.bin", 200_000)
    config = flash.REPO / "board-configs" / "esp32-devkitc-door-mfrc522.json"
    try:
        rc = main(qadam_flash(port.port, image, tmp_path, "--config", str(config)))
        out, err = capsys.readouterr()
        data = mock.flash()
    finally:
        port.close()
        board.stop()
    assert rc == 0, out + err
    assert data[OFFSET : OFFSET + 200_000] == image.read_bytes()
    assert "  Hash of data verified." in out.splitlines()
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    for f in files:
        rel = f.relative_to(tmp_path / "out")
        assert (board.flash / rel).read_bytes() == f.read_bytes(), rel
    assert (board.flash / "board.json").read_bytes() == config.read_bytes()
    assert f"all {len(files) + 1} verified by sha256" in out
