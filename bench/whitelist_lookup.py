"""The board's whitelist lookup (firmware/store/whitelist.py, a binary search reading one 12-byte
record at a time) in the real MicroPython VM at -X heapsize=64K, over a 50,000-card list (600 KB,
built on the host by the cloud's builder): record reads per lookup, µs per lookup, bytes
allocated per lookup, and the load (CRC check) time.

``python -m bench whitelist_lookup``. Baseline in the same VM run: a linear scan of the same file
(4,092-byte chunks, ``bytearray.find`` in C, alignment checked) — what a board does with an
unsorted list. The unix port reads the host's file system, so these are VM costs, not flash
timings.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, Row, median, report
from cloud.domain.whitelist import build_whitelist

MICROPYTHON = str(Path(sys.executable).with_name("micropython"))
CARDS = 50_000
LOOKUPS = 2_000  # half hits, half misses
SCAN_LOOKUPS = 100  # the baseline is slow; half hits, half misses

_SCRIPT = r"""
import sys, time, gc, json
sys.path.append(%(fw)r)
from store.whitelist import Whitelist
d = %(dir)r
def load(p, n):
    b = bytearray(n)
    with open(p, "rb") as f:
        f.readinto(b)
    return b
hits = load(d + "/hits.bin", %(nh)d * 8)
miss = load(d + "/miss.bin", %(nm)d * 8)
key = bytearray(8)
def put(src, i):
    o = i * 8
    for j in range(8):
        key[j] = src[o + j]
t0 = time.ticks_us()
wl = Whitelist(d + "/wl.bin")
t_load = time.ticks_diff(time.ticks_us(), t0)
res = {"load_ms": t_load / 1000}
for name, src, n, want in (("hit", hits, %(nh)d, True), ("miss", miss, %(nm)d, False)):
    rmax = 0
    r0 = wl.reads
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    t = 0
    for i in range(n):
        put(src, i)
        r1 = wl.reads
        t1 = time.ticks_us()
        ok = wl.lookup(key)
        t += time.ticks_diff(time.ticks_us(), t1)
        rmax = max(rmax, wl.reads - r1)
        assert ok == want
    res[name + "_alloc"] = (gc.mem_alloc() - a0) / n
    gc.enable()
    res[name + "_us"] = t / n
    res[name + "_reads"] = (wl.reads - r0) / n
    res[name + "_reads_max"] = rmax
wl.close()
# Baseline: linear scan of the same file.
buf = bytearray(4092)
def scan(f, k):
    f.seek(32)
    while True:
        n = f.readinto(buf)
        if not n:
            return False
        o = buf.find(k)
        while 0 <= o < n:
            if o %% 12 == 0:
                return True
            o = buf.find(k, o + 1)
with open(d + "/wl.bin", "rb") as f:
    for name, src, want in (("hit", hits, True), ("miss", miss, False)):
        gc.collect()
        gc.disable()
        a0 = gc.mem_alloc()
        t0 = time.ticks_us()
        for i in range(%(ns)d):
            put(src, i)
            assert scan(f, key) == want
        res["scan_" + name + "_us"] = time.ticks_diff(time.ticks_us(), t0) / %(ns)d
        res["scan_" + name + "_alloc"] = (gc.mem_alloc() - a0) / %(ns)d
        gc.enable()
print(json.dumps(res))
"""


def _files(d: Path) -> tuple[int, int]:
    rnd = random.Random(1)
    keys: set[bytes] = set()
    while len(keys) < CARDS:
        keys.add(rnd.randbytes(8))
    entries = [(k.hex(), "student", 0, rnd.randrange(256), 0) for k in keys]
    (d / "wl.bin").write_bytes(build_whitelist(1, entries))
    listed = sorted(keys)
    hits = [listed[rnd.randrange(CARDS)] for _ in range(LOOKUPS // 2)]
    misses: list[bytes] = []
    while len(misses) < LOOKUPS // 2:
        k = rnd.randbytes(8)
        if k not in keys:
            misses.append(k)
    (d / "hits.bin").write_bytes(b"".join(hits))
    (d / "miss.bin").write_bytes(b"".join(misses))
    return len(hits), len(misses)


def _once(d: Path, nh: int, nm: int) -> dict[str, float]:
    script = _SCRIPT % {"fw": str(REPO / "firmware"), "dir": str(d), "nh": nh, "nm": nm,
                        "ns": SCAN_LOOKUPS // 2}  # fmt: skip
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=64K", "-c", script],
                         capture_output=True, text=True, check=True, timeout=600)  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run(repeat: int = 3) -> list[Row]:
    d = Path(tempfile.mkdtemp(prefix="qadam-bench-wl-"))
    try:
        nh, nm = _files(d)
        runs = [_once(d, nh, nm) for _ in range(repeat)]
    finally:
        shutil.rmtree(d, ignore_errors=True)

    def m(k: str) -> float:
        return median([r[k] for r in runs])

    return [
        Row("lookup, listed card (50,000 cards)", m("hit_us"), "us",
            baseline=m("scan_hit_us"), ratio=m("scan_hit_us") / m("hit_us"),
            goal="tap path: well under 1 ms of VM time"),
        Row("lookup, unknown card", m("miss_us"), "us",
            baseline=m("scan_miss_us"), ratio=m("scan_miss_us") / m("miss_us")),
        Row("record reads per lookup, listed (mean)", m("hit_reads"), "reads"),
        Row("record reads per lookup, unknown (mean)", m("miss_reads"), "reads"),
        Row("record reads per lookup (max)", max(m("hit_reads_max"), m("miss_reads_max")),
            "reads", goal="<= 17 (ceil log2 50,001)"),
        Row("allocated per lookup, listed", m("hit_alloc"), "bytes",
            baseline=m("scan_hit_alloc"), goal="0"),
        Row("allocated per lookup, unknown", m("miss_alloc"), "bytes",
            baseline=m("scan_miss_alloc"), goal="0"),
        Row("load with CRC check (600 KB)", m("load_ms"), "ms"),
    ]  # fmt: skip


if __name__ == "__main__":
    report("whitelist_lookup", run())
