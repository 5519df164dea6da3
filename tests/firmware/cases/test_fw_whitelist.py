from fwhelpers import key, rmtree, tempdir, whitelist_bytes, write, write_whitelist
from store.whitelist import Whitelist, WhitelistError
from store.wlcheck import open_whitelist


def _ceil_log2(n):
    b = 0
    while (1 << b) < n:
        b += 1
    return b


def _with_list(data, fn):
    d = tempdir()
    try:
        p = d + "/whitelist.bin"
        write(p, data)
        return fn(p)
    finally:
        rmtree(d)


def test_hits_misses_first_last():
    d = tempdir()
    try:
        for n in (1, 2, 3, 7, 33, 64):  # small lists: the VM runs this in a 64 KiB heap
            p = d + "/wl" + str(n) + ".bin"
            write_whitelist(p, 9, [key(i) for i in range(n)])
            _check_list(p, n)
    finally:
        rmtree(d)


def _check_list(p, n):
    keys = sorted(key(i) for i in range(n))
    wl = Whitelist(p)
    try:
        assert wl.version == 9 and wl.count == n
        limit = _ceil_log2(n) + 1
        for k in keys:  # includes the first and the last record
            wl.reads = 0
            assert wl.lookup(k)
            assert bytes(wl.rec[0:8]) == k and wl.attrs() == 1
            assert wl.reads <= limit, (n, wl.reads)
        for i in range(n, n + 20):
            wl.reads = 0
            assert not wl.lookup(key(i))
            assert wl.reads <= limit, (n, wl.reads)
        assert not wl.lookup(b"\x00" * 8)
        assert not wl.lookup(b"\xff" * 8)
    finally:
        wl.close()


def test_empty_list_denies():
    def check(p):
        wl = Whitelist(p)
        assert wl.count == 0 and not wl.lookup(key(1)) and wl.reads == 0
        wl.close()

    _with_list(whitelist_bytes(1, []), check)


def _rejected(data):
    def check(p):
        try:
            Whitelist(p).close()
        except WhitelistError:
            return True
        return False

    return _with_list(data, check)


def test_bad_header_rejected():
    keys = [key(i) for i in range(5)]
    assert _rejected(whitelist_bytes(1, keys, magic=b"QWL2"))
    assert _rejected(whitelist_bytes(1, keys, fmt=2))
    assert _rejected(whitelist_bytes(1, keys, rsize=16))
    assert _rejected(whitelist_bytes(1, keys, crc=1234))
    assert _rejected(whitelist_bytes(1, keys)[:20])
    assert _rejected(whitelist_bytes(1, keys)[:-1])  # truncated record
    assert _rejected(whitelist_bytes(1, keys) + b"\x00")


def test_open_whitelist_reasons():
    d = tempdir()
    try:
        wl, why = open_whitelist(d + "/missing.bin")
        assert wl is None and why == "no_whitelist"
        write(d + "/bad.bin", b"garbage" * 10)
        wl, why = open_whitelist(d + "/bad.bin")
        assert wl is None and why == "bad_whitelist"
        write(d + "/ok.bin", whitelist_bytes(4, [key(1)]))
        wl, why = open_whitelist(d + "/ok.bin")
        assert why is None and wl.version == 4 and wl.lookup(key(1))
        wl.close()
    finally:
        rmtree(d)
