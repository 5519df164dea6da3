# An ESP32 flash partition as MicroPython's block-device protocol sees it, for vfs.VfsLfs2 in the
# unix-port VM, that can lose power after any program or erase operation.
#
# The interface is the extended one an esp32.Partition has (MicroPython docs, "vfs" / "Block
# devices"): readblocks(block, buf, offset), writeblocks(block, buf, offset) programs without
# erasing, ioctl(6, block) erases a 4096-byte sector, ioctl(4)/ioctl(5) give the block count and
# size. NOR semantics: an erase sets the sector to 0xFF, a program can only clear bits (new byte =
# old AND written); programming bits that are already 0 is counted in `reprog` (LittleFS should
# never do it).
#
# The bytes live in a host file, not in the VM's heap: a 64 KiB heap holds the firmware under
# test, not the flash chip. Power: `arm(budget, rng)` lets `budget` more program/erase operations
# through; the next one is torn (a random prefix of it lands, maybe one byte half programmed; an
# erase leaves a random prefix erased and maybe junk after it), then the device is dead: every
# call returns -EIO (LittleFS raises OSError(EIO) to its caller) and writes nothing. A dead view is
# never revived: `view()` gives the next boot a fresh one over the surviving bytes (file objects
# of the old mount may still be finalised later; they only meet a dead device).
import os

EIO = -5
BS = 4096


class Flash:
    def __init__(self, path, blocks):
        self.path = path
        self.blocks = blocks
        f = open(path, "wb")
        ff = b"\xff" * 256
        for _ in range(blocks * BS // 256):
            f.write(ff)
        f.close()
        self.f = open(path, "r+b")
        self.scratch = bytearray(128)
        self.budget = -1  # < 0: no cut armed
        self.rng = None
        self.cuts = 0
        self.ops = 0  # program + erase operations since the last arm()
        self.reprog = 0
        self.live = None  # the view that may still write

    def close(self):
        self.f.close()
        try:
            os.remove(self.path)
        except OSError:
            pass

    def arm(self, budget, rng):
        self.budget = budget
        self.rng = rng
        self.ops = 0

    def view(self):
        v = BlockDev(self)
        self.live = v
        return v

    def dead(self):
        return self.live is None or self.live.dead

    # ---- the chip -------------------------------------------------------------------------
    def read(self, addr, buf):
        f = self.f
        f.seek(addr)
        f.readinto(buf)

    def program(self, addr, buf, n):
        # NOR: old AND new over buf[:n], through a small scratch buffer (heap).
        s = self.scratch
        f = self.f
        p = 0
        while p < n:
            k = min(n - p, len(s))
            m = memoryview(s)[:k]
            self.read(addr + p, m)
            for i in range(k):
                o = s[i]
                b = buf[p + i]
                if ~o & b & 0xFF:
                    self.reprog += 1
                s[i] = o & b
            f.seek(addr + p)
            f.write(m)
            p += k

    def erase(self, addr, n):
        s = self.scratch
        for i in range(len(s)):
            s[i] = 0xFF
        f = self.f
        f.seek(addr)
        while n:
            k = min(n, len(s))
            f.write(memoryview(s)[:k])
            n -= k

    def step(self):
        # One program/erase operation: True if it is the one the power goes during.
        self.ops += 1
        if self.budget < 0:
            return False
        if self.budget == 0:
            self.budget = -1
            self.cuts += 1
            return True
        self.budget -= 1
        return False


class BlockDev:
    def __init__(self, flash):
        self.fl = flash
        self.dead = False

    def readblocks(self, block, buf, off=0):
        if self.dead:
            return EIO
        self.fl.read(block * BS + (off or 0), buf)
        return 0

    def writeblocks(self, block, buf, off=None):
        if self.dead:
            return EIO
        fl = self.fl
        if off is None:  # the simple interface: erase, then program the whole block(s)
            for b in range(len(buf) // BS):
                if self._erase(block + b):
                    return EIO
            off = 0
        addr = block * BS + off
        n = len(buf)
        if fl.step():
            rng = fl.rng
            k = rng.below(n + 1)
            fl.program(addr, buf, k)
            if k < n and rng.below(2):
                # A half-programmed byte: some of the bits it was to clear are cleared.
                m = bytearray(1)
                m[0] = buf[k] | rng.below(256)
                fl.program(addr + k, m, 1)
            self.dead = True
            return EIO
        fl.program(addr, buf, n)
        return 0

    def _erase(self, block):
        fl = self.fl
        addr = block * BS
        if fl.step():
            rng = fl.rng
            k = rng.below(BS + 1)
            fl.erase(addr, k)
            if k < BS and rng.below(2):
                # Weak bits: junk over part of the rest of the sector.
                j = rng.below(BS - k) + 1
                s = fl.scratch
                f = fl.f
                f.seek(addr + k)
                while j:
                    n = min(j, len(s))
                    for i in range(n):
                        s[i] = rng.below(256)
                    f.write(memoryview(s)[:n])
                    j -= n
            self.dead = True
            return True
        fl.erase(addr, BS)
        return False

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.fl.blocks
        if op == 5:  # block size
            return BS
        if op == 6:  # erase a block
            if self.dead or self._erase(arg):
                return EIO
            return 0
        return 0  # init, deinit, sync
