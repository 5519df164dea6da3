# The shared whitelist test vector (tests/vectors/whitelist_v1.json): the board's lookup and delta
# merge must agree byte for byte with what the cloud builds (tests/cloud/test_whitelist_dist.py
# checks the cloud side against the same file). Runs under CPython and in the 64K VM.
import json

from compat import asyncio
from fwhelpers import read, rmtree, tempdir, write
from store.whitelist import Whitelist
from store.wlupdate import DELTA, Update, WlError
from wlbuild import chunks


def _vector():
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    for path in (here + "/../../vectors/whitelist_v1.json", "tests/vectors/whitelist_v1.json"):
        try:
            with open(path) as f:
                return json.load(f)
        except OSError:
            pass
    raise AssertionError("tests/vectors/whitelist_v1.json not found")


def _unhex(s):
    return bytes(int(s[i : i + 2], 16) for i in range(0, len(s), 2))


def _check_lookups(path, cases):
    w = Whitelist(path)
    try:
        for c in cases:
            hit = w.lookup(_unhex(c["key"]))
            assert hit == c["found"], c
            if hit:
                assert w.attrs() == c["attrs"], (c, w.attrs())
                assert w.profile() == c["profile"], c
                assert w.allergens() == c["allergens"], c
    finally:
        w.close()


def test_vector_lookups():
    v = _vector()
    d = tempdir()
    try:
        write(d + "/whitelist.bin", _unhex(v["v1"]["hex"]))
        w = Whitelist(d + "/whitelist.bin")
        assert w.version == 1 and w.count == len(v["v1"]["entries"])
        w.close()
        _check_lookups(d + "/whitelist.bin", v["lookups_v1"])
    finally:
        rmtree(d)


def test_vector_delta_merge_gives_v2_bytes():
    v = _vector()
    d = tempdir()
    try:
        write(d + "/whitelist.bin", _unhex(v["v1"]["hex"]))
        delta = _unhex(v["delta_1_2"]["hex"])
        u = Update(d)
        done = False
        for m in chunks(delta, 2, base=1, kind=DELTA, size=40):
            done = u.feed(m)
        assert done
        assert asyncio.run(u.install(1)) == 2
        assert read(d + "/whitelist.bin") == _unhex(v["v2"]["hex"])
        _check_lookups(d + "/whitelist.bin", v["lookups_v2"])
    finally:
        rmtree(d)


def test_vector_delta_on_wrong_base_is_refused():
    v = _vector()
    d = tempdir()
    try:
        write(d + "/whitelist.bin", _unhex(v["v2"]["hex"]))
        u = Update(d)
        for m in chunks(_unhex(v["delta_1_2"]["hex"]), 2, base=1, kind=DELTA):
            u.feed(m)
        try:
            asyncio.run(u.install(2))
        except WlError as e:
            assert str(e) == "base", e
        else:
            raise AssertionError("a delta for base 1 installed on version 2")
        assert read(d + "/whitelist.bin") == _unhex(v["v2"]["hex"])
    finally:
        rmtree(d)
