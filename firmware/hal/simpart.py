# Simulator stand-in for the ESP32's ROMFS partitions (the unix-port VM has no `vfs.rom_ioctl`
# and no esp32.Partition), at the level of the real API, as hal/simnet.py stands in for
# `network`. partslots.py imports it only where `vfs.rom_ioctl` is missing, so the code above it
# is the real board's. What it copies (MicroPython ports/esp32/esp32_partition.c, extmod/vfs_rom.c,
# tools/mpremote romfs deploy; docs/decisions.md D27-H):
#   rom_ioctl(1)        the number of ROMFS segments; rom_ioctl(2, i) segment i's device (on the
#                       ESP32 the esp32.Partition object of the partition, mapped by the buffer
#                       protocol), a negative errno for a segment that does not exist
#   dev.ioctl(4, 0)     block count; dev.ioctl(5, 0) block size (4096); dev.ioctl(6, n) erases
#                       block n
#   dev.readblocks(n, buf[, off])   reads len(buf) bytes at n * 4096 + off
#   dev.writeblocks(n, buf[, off])  without off: erase the blocks buf covers, then program; with
#                       off: program only. Programming NOR flash only clears bits (old & new): a
#                       block written without its erase reads back wrong, as on the chip.
# The partitions are files of the board's flash directory, romfs0.bin, romfs1.bin, ... (their
# size is the partition's); no file: no segment. The memory map the ESP32 gives VfsRom has no
# stand-in here: the bootstrap reads the image's bytes itself (tools/flashing/otalayout.py
# PARTS_MAIN: a module it loads would leave its names in the heap for good).
# CUT: a test's power cut, the number of erase/program operations still allowed (None: no cut).
import os

BLOCK = 4096
CUT = None


class PowerCut(OSError):
    pass


def _tick():
    global CUT
    if CUT is not None:
        if CUT <= 0:
            raise PowerCut("power cut")
        CUT -= 1


class Partition:
    def __init__(self, path):
        self.path = path
        self.size = os.stat(path)[6]

    def info(self):
        # (type, subtype, address, size, label, encrypted) as esp32.Partition.info(); a data
        # partition of subtype 0x8f as in MicroPython's partitions-4MiB-romfs.csv
        return (1, 0x8F, 0, self.size, self.path, False)

    def ioctl(self, op, arg):
        if op in (1, 2, 3):  # init, deinit, sync
            return 0
        if op == 4:
            return self.size // BLOCK
        if op == 5:
            return BLOCK
        if op == 6:
            self._erase(arg * BLOCK, BLOCK)
            return 0
        return None

    def _check(self, at, n):
        if at < 0 or at + n > self.size:
            raise OSError(22)  # EINVAL, as esp_partition_read/write outside the partition

    def readblocks(self, n, buf, off=0):
        at = n * BLOCK + off
        self._check(at, len(buf))
        with open(self.path, "rb") as f:
            f.seek(at)
            f.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        if off is None:
            off = 0
            self._erase(n * BLOCK, (len(buf) + BLOCK - 1) // BLOCK * BLOCK)
        at = n * BLOCK + off
        self._check(at, len(buf))
        _tick()
        old = bytearray(len(buf))
        with open(self.path, "r+b") as f:
            f.seek(at)
            f.readinto(old)
            for i in range(len(buf)):
                old[i] &= buf[i]
            f.seek(at)
            f.write(old)

    def _erase(self, at, n):
        if at % BLOCK or n % BLOCK:
            raise OSError(22)
        self._check(at, n)
        _tick()
        ff = b"\xff" * 512
        with open(self.path, "r+b") as f:
            f.seek(at)
            for _ in range(n // 512):
                f.write(ff)


def _path(i):
    return "romfs%d.bin" % i


def rom_ioctl(op, i=0):
    n = 0
    while True:
        try:
            os.stat(_path(n))
        except OSError:
            break
        n += 1
    if op == 1:
        return n
    if op == 2:
        return Partition(_path(i)) if 0 <= i < n else -22
    return -22


def make(i, size):
    """The simulator's flash tool: partition i, erased (all 0xff), `size` bytes (whole blocks)."""
    with open(_path(i), "wb") as f:
        ff = b"\xff" * 512
        for _ in range(size // 512):
            f.write(ff)
