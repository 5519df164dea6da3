# OTA on LittleFS, deterministically: for each step of an update that writes the flash (the
# bootstrap's check and activation, a trial boot, the rollback boot, the confirmation), a power
# cut at its 1st, 2nd, ... program/erase operation until the step completes without one; after
# each cut the board boots a whole image of the release its slot state names and the step ends
# done by the boots that follow. VM only; run by tests/firmware/test_lfs_ota_powercut.py in its
# own VM process (lfs_ota_cuts.py has the random cuts, the flash and the releases).
import binascii
import gc
import os
import sys

import vfs
from blockdev import Flash
from lfs_ota_cuts import BLOCKS, D, PUB, SEED, Rng, _rel, _unload, file_sha, write_image


def _prepare(fl, step):
    # A fresh flash in the state before `step`, written without a cut.
    fl.arm(-1, None)
    vfs.VfsLfs2.mkfs(fl.view())
    vfs.mount(fl.view(), D)
    os.chdir(D)
    write_image("slot_a.rom", "1.0.0")
    with open("device.json", "w") as f:
        f.write('{"ota_pub": "%s", "ota_tries": 2}' % PUB)
    rel = _rel("2.0.0")
    if step == "check":
        write_image("ota.part", "2.0.0")
        with open("ota.chk", "w") as f:
            f.write('{"id": 2, "ver": "2.0.0", "size": %d, "sha256": "%s", "sig": "%s"}'
                    % (rel[1], rel[2], rel[3]))
    else:
        write_image("slot_b.rom", "2.0.0")
        left = {"trial boot": 2, "rollback": 0, "confirm": 1}[step]
        with open("ota.json", "w") as f:
            f.write('{"act": "a", "try": "b", "left": %d, "ver": {"a": "1.0.0", "b": "2.0.0"},'
                    ' "rb": null}' % left)


def _step(step):
    import slots
    if step == "confirm":
        slots.confirm()
        return
    booted = slots.boot()
    if step == "check":
        import ota.check
        assert booted == "a" and ota.check.run()


def _bootable(step, cut):
    # After the cut (and after a power-on without one): a whole image of the release the state
    # names, and the step's work either not done or done, then done by the boots that follow.
    import slots
    booted = slots.boot()
    s = slots.load()
    assert file_sha(slots.path(booted)) == _rel(s["ver"].get(booted, "1.0.0"))[2], (step, cut, s)
    if step == "check" and "ota.chk" in os.listdir():
        import ota.check
        assert ota.check.run() or slots.load()["try"] == "b", (step, cut)
    s = slots.load()
    want = {"check": ("try", "b"), "trial boot": ("try", "b"), "rollback": ("act", "a"),
            "confirm": ("act", "b")}[step]
    if step == "confirm" and s.get("try"):
        slots.confirm()  # not confirmed before the cut: the next ack confirms it
        s = slots.load()
    if step == "rollback" and s.get("try"):
        assert slots.boot() == "a"
        s = slots.load()
    assert s.get(want[0]) == want[1], (step, cut, s)


def test_lfs_ota_cut_at_every_operation_of_each_step():
    # Deterministic: for each step, a cut at its 1st, 2nd, ... program/erase operation until it
    # completes without one.
    fl = Flash("/tmp/qadam-lfs-ota-e-" + binascii.hexlify(os.urandom(4)).decode(), BLOCKS)
    here = os.getcwd()
    sys.path[:] = [p if not p or p[0] in "/." else here + "/" + p for p in sys.path]
    rng = Rng(SEED)
    done = {}
    try:
        for step in ("check", "trial boot", "rollback", "confirm"):
            k = 0
            while True:
                _prepare(fl, step)
                fl.arm(k, rng)
                cut = False
                try:
                    _step(step)
                except OSError:
                    if not fl.dead():
                        raise
                    cut = True
                os.chdir(here)
                vfs.umount(D)
                _unload()
                gc.collect()
                fl.arm(-1, rng)
                vfs.mount(fl.view(), D)
                os.chdir(D)
                _bootable(step, k)
                os.chdir(here)
                vfs.umount(D)
                _unload()
                gc.collect()
                if not cut:
                    break
                k += 1
            done[step] = k
        print("@stats", "ota_steps", "cuts=" + str(fl.cuts), "reprog=" + str(fl.reprog),
              " ".join(k.replace(" ", "_") + "=" + str(v) for k, v in sorted(done.items())))
        assert all(v > 0 for v in done.values()), done
    finally:
        os.chdir(here)
        try:
            vfs.umount(D)
        except OSError:
            pass
        fl.close()
