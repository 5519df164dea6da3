# The board's store on MicroPython's LittleFS with power cuts at block level (issue #14 part 7).
# VM only (vfs.VfsLfs2): run by tests/firmware/test_lfs_powercut.py through mp_runner in one VM
# process that loops over every cut. Not a test_*.py case, so CPython's pytest does not collect it.
#
# The flash is tests/firmware/emul/blockdev.py (an ESP32 partition: 4096-byte sectors, extended
# block interface, NOR program/erase) formatted once like a new board; then, over and over: arm a
# cut after a random number of program/erase operations, mount it the way the ESP32 port's
# _boot.py does (vfs.mount(bdev, ...) autodetects LittleFS v2; a mount that fails would make the
# board format its flash, so here it fails the test), boot the store as main.py does, check it
# against the model, work until the power goes, unmount, repeat from the surviving bytes.
import binascii
import gc
import os

import vfs
from blockdev import Flash
from store.journal import Journal, next_boot
from test_fw_journal_powercut import SEG, SEGS, Rng, _check, _count, _session

D = "/flash"  # the mount point (the board mounts at "/" and runs in it)
BLOCKS = 64  # 256 KiB partition
JCUTS = 1000
JSEED = 20261207
OPS = 60  # a cut after 0..OPS-1 program/erase operations of a boot
WCUTS = 20
WSEED = 7121
WOPS = 40


def _tmp(tag):
    return "/tmp/qadam-lfs-" + tag + "-" + binascii.hexlify(os.urandom(4)).decode()


def _mount(fl):
    # As the ESP32's _boot.py: vfs.mount on the block device itself (autodetect). Any error here
    # is a board that formats its flash at boot: fail.
    vfs.mount(fl.view(), D)


def _umount():
    try:
        vfs.umount(D)
    except OSError:  # not mounted
        pass


def _format(fl):
    vfs.VfsLfs2.mkfs(fl.view())


def _stats(name, st, fl):
    kv = " ".join(k.replace(" ", "_") + "=" + str(v) for k, v in sorted(st.items()))
    print("@stats", name, "cuts=" + str(fl.cuts), "reprog=" + str(fl.reprog), kv)


def _boot_journal():
    # main.py's order: boot counter, journal recovery, boot floor from the journal.
    boot = next_boot(D)
    j = Journal(D, SEG, SEGS)
    floor = j.min_boot()
    if floor >= boot:
        boot = next_boot(D, floor)
    return boot, j


def test_lfs_journal_reads_its_own_appends():
    # A reader handle open on the newest segment must see what the writer appended after it was
    # opened (on LittleFS a handle keeps the file as it was at open), and an ack must trim only
    # what it covers: before D25-I the walk stopped at the reader's stale end of file.
    fl = Flash(_tmp("r"), BLOCKS)
    try:
        _format(fl)
        _mount(fl)
        j = Journal(D, SEG, SEGS)
        want = []
        for q in range(1, 10):
            assert j.append_tap(1, q, 1700000000 + q, 1, q, "in", bytes(8), "granted", "ok") == q
            want.append((1, q))
            assert [r[:2] for r in j.records()] == want, (q, [r[:2] for r in j.records()])
            if q == 7:
                assert j.ack(1, 1, 3) == 3
                del want[:3]
        assert j.count == len(want) == 6 and len(j.segs) == 2, (j.count, j.segs)
        assert j.ack(1, 4, 8) == 5 and j.count == 1
        j.close()
        j = Journal(D, SEG, SEGS)  # and after a reboot the same
        assert [r[:2] for r in j.records()] == [(1, 9)]
        j.close()
    finally:
        _umount()
        fl.close()


def test_lfs_journal_power_cuts():
    rng = Rng(JSEED)
    fl = Flash(_tmp("j"), BLOCKS)
    try:
        _format(fl)
        live = []  # the model: _sig() of every event the journal must hold, oldest first
        st = {}
        box = [None]  # the journal operation under way when the power went
        j = None
        boots = []
        while fl.cuts < JCUTS:
            fl.arm(rng.below(OPS), rng)
            _mount(fl)
            where = "boot"
            try:
                boot, j = _boot_journal()
                assert not boots or boot > boots[-1], (boot, boots[-1:])
                boots.append(boot)
                if len(boots) > 4:
                    boots.pop(0)
                _check(j, live, box[0], st)
                box[0] = None
                where = "run"
                _session(j, rng, live, boot, st, box)
            except Exception as e:  # the power went: OSError(EIO) from LittleFS
                if not fl.dead():
                    raise
                if where == "run" and not isinstance(e, OSError):
                    raise
                _count(st, where + (" " + box[0][0] if box[0] and where == "run" else ""))
            vfs.umount(D)
            j = None  # the dead board's journal, its files and its mount go before the next boot
            gc.collect()
        # The last reboot, no cut: everything acked gone, everything else there, once.
        fl.arm(-1, rng)
        _mount(fl)
        boot, j = _boot_journal()
        _check(j, live, box[0], st)
        j.close()
        vfs.umount(D)
        _stats("journal", st, fl)
        for k in ("boot", "run a", "run k", "drops", "cut append kept", "cut append lost",
                  "cut ack applied", "cut ack not applied"):
            assert st.get(k, 0) > 0, (k, st)
        assert fl.reprog == 0, fl.reprog
    finally:
        _umount()
        fl.close()
