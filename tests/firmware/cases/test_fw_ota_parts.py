# OTA slots in ROMFS partitions (partslots.py, D27-H) over the partition stand-in (hal/simpart.py,
# the esp32.Partition / vfs.rom_ioctl block calls): the bootstrap's check writes a verified
# download into the inactive partition (erase, program, read back by sha256) and only then puts
# it on trial; a power cut at every erase and program operation of that write leaves the
# confirmed partition untouched and the board booting it, and the next power-on finishes the
# job. Under CPython and in the VM.
import hashlib
import json
import os
import sys

from fwhelpers import rmtree, tempdir

_here = os.getcwd()
sys.path[:] = [p if not p or p[0] in "/." else _here + "/" + p for p in sys.path]

import slots  # noqa: E402


def sp():
    # The stand-in module as it is now (ota/check.py drops it from sys.modules after each run,
    # and its power-cut counter lives in the module).
    import hal.simpart
    return sys.modules["hal.simpart"]


# The release of test_fw_ota.py (tools/release.py's scheme, the test key): a 10,000-byte image.
PUB = "735f66354cde884358877db5f722ea457241e7308e7ad695e99aacd3b6308df5"
SHA = "00a62ed2080abd6258ee53b428ef168f78a93b83d7fede14d081009d8ca93ebf"
SIG = ("f1e04370614d3e9f3ac789388506faae59ecf82920a1ef1f69b8dc65d55efdc6"
       "c6020247c5ee31749eb4ac99420b125fa11d4063fcc14b1120249f6d67df0f04")
SIZE = 10000
PART_SIZE = 3 * 4096  # three blocks: the image needs all three
OLD = b"the confirmed image" * 8


def image(off, n):
    b = bytearray(n)
    for i in range(off // 32, (off + n + 31) // 32):
        d = hashlib.sha256(b"img%d" % i).digest()
        for k in range(32):
            p = i * 32 + k - off
            if 0 <= p < n and i * 32 + k < SIZE:
                b[p] = d[k]
    return bytes(b[:max(0, min(n, SIZE - off))])


def sha(d, n):
    import partslots
    return partslots.sha256(d, n)


def dev(slot):
    import partslots
    return partslots.device(slot)


def _download(size=SIZE):
    # What ota/fetch.py leaves for the bootstrap: the image in ota.part, the offer in ota.chk.
    with open("ota.part", "wb") as f:
        for off in range(0, SIZE, 1000):
            f.write(image(off, 1000))
    with open("ota.chk", "w") as f:
        f.write(json.dumps({"id": 7, "ver": "2.0.0", "size": size, "sha256": SHA, "sig": SIG}))


def in_flash(fn, part_size=PART_SIZE):
    d = tempdir()
    os.chdir(d)
    try:
        sp().make(0, PART_SIZE)
        sp().make(1, part_size)
        dev("a").writeblocks(0, OLD)  # what the flash tool deployed into slot a
        with open("device.json", "w") as f:
            f.write('{"device": "d1", "ota_pub": "%s", "ota_tries": 3}' % PUB)
        fn()
    finally:
        sp().CUT = None
        os.chdir(_here)
        rmtree(d)


def _check():
    import ota.check
    from compat import unload
    try:
        return ota.check.run()
    finally:
        unload("ota.check", "ota.ed25519")


OLD_SHA = None


def _old_sha():
    global OLD_SHA
    if OLD_SHA is None:
        from binascii import hexlify
        OLD_SHA = hexlify(hashlib.sha256(OLD).digest()).decode()
    return OLD_SHA


def test_stand_in_has_the_partition_block_semantics():
    def t():
        assert sp().rom_ioctl(1) == 2 and sp().rom_ioctl(2, 2) < 0
        d = dev("b")
        assert d.ioctl(4, 0) == 3 and d.ioctl(5, 0) == 4096
        d.writeblocks(1, b"\x0f\xf0", 10)  # program only: bits can only be cleared
        d.writeblocks(1, b"\xf0\xf0", 10)
        b = bytearray(2)
        d.readblocks(1, b, 10)
        assert bytes(b) == b"\x00\xf0"
        d.ioctl(6, 1)  # erase: all ones again
        d.readblocks(1, b, 10)
        assert bytes(b) == b"\xff\xff"
        try:
            d.readblocks(3, b)  # past the partition's end
            raise AssertionError("read past the end")
        except OSError:
            pass
    in_flash(t)


def test_download_goes_into_the_inactive_partition_then_on_trial():
    def t():
        import partslots
        assert partslots.present()
        _download()
        assert _check() is True
        s = slots.load()
        assert s["act"] == "a" and s["try"] == "b" and s["left"] == 3
        assert sha(dev("b"), SIZE) == SHA
        assert sha(dev("a"), len(OLD)) == _old_sha()
        left = os.listdir(".")
        assert "ota.part" not in left and "ota.chk" not in left
        assert "slot_b.rom" not in left and "slot_a.rom" not in left
        assert slots.boot() == "b"  # the next power-on boots it on trial
    in_flash(t)


def test_power_cut_at_every_erase_and_program_of_the_inactive_partition():
    # 3 erases + 10 programs of 1 KB: a cut before each one, then one run without a cut.
    def t(cut):
        _download()
        sp().CUT = cut
        try:
            _check()
            done = True
        except OSError as e:
            assert e.args[0] == "power cut", e
            done = False
        sp().CUT = None
        if done:
            return True
        # The board powers on again: it boots the confirmed partition, untouched.
        assert slots.boot() == "a"
        assert sha(dev("a"), len(OLD)) == _old_sha()
        assert slots.load()["try"] is None
        assert "ota.part" in os.listdir(".") and "ota.chk" in os.listdir(".")
        # ... and its check writes the partition again, whole this time.
        assert _check() is True
        assert slots.load()["try"] == "b" and sha(dev("b"), SIZE) == SHA
        assert slots.boot() == "b"
        return False

    cut = 0
    while True:
        res = [None]

        def one():
            res[0] = t(cut)
        in_flash(one)
        if res[0]:
            break
        cut += 1
    assert cut == 13, cut


def test_image_bigger_than_the_partition_is_refused_and_nothing_changes():
    def t():
        _download()
        assert _check() is False
        with open("ota.err") as f:
            assert json.loads(f.read())["err"] == "size"
        s = slots.load()
        assert s["try"] is None and s["act"] == "a"
        assert sha(dev("a"), len(OLD)) == _old_sha()
        b = bytearray(16)
        dev("b").readblocks(0, b)
        assert bytes(b) == b"\xff" * 16  # not even erased: refused before any write
        left = os.listdir(".")
        assert "ota.part" not in left and "ota.chk" not in left
    in_flash(t, part_size=2 * 4096)


def test_board_without_partitions_keeps_the_file_slots():
    def t():
        for i in (0, 1):
            os.remove("romfs%d.bin" % i)
        import partslots
        assert not partslots.present()
        _download()
        assert _check() is True
        assert slots.load()["try"] == "b" and "slot_b.rom" in os.listdir(".")
    in_flash(t)
