# Whitelist updates: chunk assembly, rejection of bad transfers (the old list stays), delta merge.
from compat import asyncio
from fwhelpers import key, read, rmtree, tempdir, whitelist_bytes, write
from store.whitelist import Whitelist
from store.wlupdate import DELTA, Update, WlError, cleanup
from wlbuild import build_delta, chunks


def _setup(version=1, keys=None):
    d = tempdir()
    if keys is not None:
        write(d + "/whitelist.bin", whitelist_bytes(version, keys))
    return d


def _feed_all(u, msgs):
    done = False
    for m in msgs:
        done = u.feed(m)
    return done


def _install(u, current):
    return asyncio.run(u.install(current))


def _expect_error(fn, reason):
    try:
        fn()
    except WlError as e:
        assert str(e) == reason, (str(e), reason)
        return
    raise AssertionError("no WlError " + reason)


def _files(d):
    import os
    return sorted(os.listdir(d))


def test_snapshot_in_chunks_installs_atomically():
    old = [key(i) for i in range(10)]
    d = _setup(1, old)
    try:
        new = [key(i) for i in range(5, 40)]
        data = whitelist_bytes(2, new)
        msgs = chunks(data, 2, size=128)
        assert len(msgs) == 4
        u = Update(d)
        assert u.feed(msgs[0]) is False
        assert u.feed(msgs[0]) is False  # duplicate of a chunk already written: ignored
        assert _feed_all(u, msgs[1:]) is True
        assert read(d + "/whitelist.bin") == whitelist_bytes(1, old)  # not yet installed
        assert _install(u, 1) == 2
        assert read(d + "/whitelist.bin") == data
        assert _files(d) == ["whitelist.bin"]
        w = Whitelist(d + "/whitelist.bin")
        assert w.version == 2 and w.lookup(key(39)) and not w.lookup(key(1))
        w.close()
    finally:
        rmtree(d)


def test_bad_transfers_keep_the_old_list():
    old = [key(i) for i in range(10)]
    d = _setup(1, old)
    before = whitelist_bytes(1, old)
    try:
        data = whitelist_bytes(2, [key(i) for i in range(30)])
        good = chunks(data, 2, size=128)
        # 1. a flipped byte in transit: the CRC of the whole object catches it
        bad = list(good)
        b = bytearray(bad[2])
        b[40] ^= 1
        bad[2] = bytes(b)
        u = Update(d)
        _expect_error(lambda: _feed_all(u, bad), "crc")
        # 2. the header claims more bytes than the chunks bring
        short = chunks(data[:-12], 2, size=128, crc=None)
        import struct
        short = [m[:20] + struct.pack("<I", len(data)) + m[24:] for m in short]
        u = Update(d)
        _expect_error(lambda: _feed_all(u, short), "size")
        # 3. a missing chunk
        u = Update(d)
        _expect_error(lambda: _feed_all(u, good[:2] + good[3:]), "gap")
        # 4. a valid transfer whose content is not a format-1 list / has a bad record CRC
        junk = b"QWL2" + data[4:]
        _expect_error(lambda: _feed_all(Update(d), chunks(junk, 2, size=128)), "format")
        badrec = data[:16] + b"\0\0\0\0" + data[20:]
        _expect_error(lambda: _feed_all(Update(d), chunks(badrec, 2, size=128)), "crc")
        # 5. version in the chunk header differs from the list's
        _expect_error(lambda: _feed_all(Update(d), chunks(data, 3, size=128)), "header")
        # 6. garbage message
        _expect_error(lambda: Update(d).feed(b"hello"), "bad_chunk")
        # chunks of a transfer whose first chunk was missed are ignored
        assert Update(d).feed(good[1]) is False
        assert read(d + "/whitelist.bin") == before
        assert _files(d) == ["whitelist.bin"]
    finally:
        rmtree(d)


def test_delta_merge_streams_old_plus_delta():
    old_keys = [key(i) for i in range(0, 80, 2)]
    d = _setup(5, old_keys)
    try:
        new_keys = [k for k in old_keys if k[0] % 3] + [key(i) for i in range(1, 30, 2)]
        old = whitelist_bytes(5, old_keys)
        # records that change attributes are replaced: build the new list with other attrs for a
        # few of the kept keys
        import struct
        newb = bytearray(whitelist_bytes(6, new_keys))
        for i in range(0, len(new_keys), 7):
            newb[32 + i * 12 + 8] = 2  # staff
        import binascii
        struct.pack_into("<I", newb, 16, binascii.crc32(newb[32:]) & 0xFFFFFFFF)
        newb = bytes(newb)
        delta = build_delta(old, newb)
        assert len(delta) < len(newb)
        u = Update(d)
        assert _feed_all(u, chunks(delta, 6, base=5, kind=DELTA, size=128)) is True
        assert _install(u, 5) == 6
        assert read(d + "/whitelist.bin") == newb
        assert _files(d) == ["whitelist.bin"]
    finally:
        rmtree(d)


def test_delta_rejected_on_wrong_base_or_wrong_result():
    old_keys = [key(i) for i in range(50)]
    d = _setup(5, old_keys)
    before = whitelist_bytes(5, old_keys)
    try:
        new = whitelist_bytes(6, old_keys[10:] + [key(100), key(300)])
        delta = build_delta(before, new)
        u = Update(d)
        assert _feed_all(u, chunks(delta, 6, base=5, kind=DELTA))
        _expect_error(lambda: _install(u, 4), "base")  # the board runs another version
        # a delta built against a different list with the same version number: the merged
        # result does not match the count/CRC the delta promises
        other = whitelist_bytes(5, old_keys + [key(300)])
        delta2 = build_delta(other, new)
        u = Update(d)
        assert _feed_all(u, chunks(delta2, 6, base=5, kind=DELTA))
        _expect_error(lambda: _install(u, 5), "merge")
        assert read(d + "/whitelist.bin") == before
        assert _files(d) == ["whitelist.bin"]
    finally:
        rmtree(d)


def test_delta_onto_no_list_and_boot_cleanup():
    d = _setup()
    try:
        new = whitelist_bytes(1, [key(i) for i in range(20)])
        delta = build_delta(whitelist_bytes(0, []), new)
        u = Update(d)
        assert _feed_all(u, chunks(delta, 1, base=0, kind=DELTA))
        assert _install(u, 0) == 1
        assert read(d + "/whitelist.bin") == new
        write(d + "/wl.part", b"x")
        write(d + "/whitelist.new", b"y")
        cleanup(d)
        assert _files(d) == ["whitelist.bin"]
    finally:
        rmtree(d)
