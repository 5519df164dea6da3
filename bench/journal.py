"""The board's journal (firmware/store/journal.py) in the real MicroPython VM, heap of a plain
ESP32 (100 KiB, docs/decisions.md D7): append cost, flash bytes per event, recovery (boot) time
of a journal holding 20,000 unacked events, and batch rendering for the sync.

``python -m bench journal``. Baseline in the same run: one JSON line per event in one file.
The unix port writes to the host's file system, so these are VM costs, not flash timings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, Row, median, report

MICROPYTHON = str(Path(sys.executable).with_name("micropython"))
EVENTS = 20000

_SCRIPT = r"""
import sys, time, os, json
sys.path.append(%(fw)r)
from store.journal import Journal
d = %(dir)r
key = b"\x01\x23\x45\x67\x89\xab\xcd\xef"
j = Journal(d)
t0 = time.ticks_us()
for s in range(1, %(n)d + 1):
    j.append_tap(1, s, 1760000000 + s, 1, s * 37, "in", key, "granted", "ok")
t_app = time.ticks_diff(time.ticks_us(), t0)
j.close()
size = 0
for n in os.listdir(d + "/journal"):
    size += os.stat(d + "/journal/" + n)[6]
t0 = time.ticks_us()
j = Journal(d)
t_rec = time.ticks_diff(time.ticks_us(), t0)
assert j.count == %(n)d
t0 = time.ticks_us()
k = 0
for b, q, ev in j.records():
    k += 1
    if k == 32 * 20:
        break
t_ren = time.ticks_diff(time.ticks_us(), t0)
t0 = time.ticks_us()
for i in range(20):
    assert j.ack(1, 1 + 32 * i, 32 * (i + 1)) == 32
t_ack = time.ticks_diff(time.ticks_us(), t0)
# Baseline in the same VM run: the walking skeleton's way, one JSON line per event appended to
# one text file (open, write, close), as most open firmware keeps its offline log.
EV = ('{"boot":%%d,"seq":%%d,"t":%%d,"sync":1,"up":%%d,"kind":"tap","reader":"in",'
      '"card":"0123456789abcdef","result":"granted","reason":"ok"}')
naive = d + "/naive.log"
t0 = time.ticks_us()
for s in range(1, %(n)d + 1):
    with open(naive, "ab") as f:
        f.write(("%%d %%d " %% (1, s) + EV %% (1, s, 1760000000 + s, s * 37) + "\n").encode())
t_naive = time.ticks_diff(time.ticks_us(), t0)
naive_size = os.stat(naive)[6]
print(json.dumps({"append_us": t_app / %(n)d, "bytes": size, "recover_ms": t_rec / 1000,
                  "render_us": t_ren / (32 * 20), "ack_ms": t_ack / 20000,
                  "naive_append_us": t_naive / %(n)d, "naive_bytes": naive_size}))
"""


def _once() -> dict[str, float]:
    d = tempfile.mkdtemp(prefix="qadam-bench-journal-")
    try:
        script = _SCRIPT % {"fw": str(REPO / "firmware"), "dir": d, "n": EVENTS}
        out = subprocess.run([MICROPYTHON, "-X", "heapsize=100K", "-c", script],
                             capture_output=True, text=True, check=True, timeout=600)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(repeat: int = 3) -> list[Row]:
    runs = [_once() for _ in range(repeat)]

    def m(k: str) -> float:
        return median([r[k] for r in runs])

    per = m("bytes") / EVENTS
    naive_per = m("naive_bytes") / EVENTS
    return [
        Row("append (tap, 31-byte record)", m("append_us"), "us/event",
            baseline=m("naive_append_us"), ratio=m("naive_append_us") / m("append_us"),
            goal="tap path never waits on it"),
        Row("appends per second", 1e6 / m("append_us"), "events/s"),
        Row("flash per event (20,000 taps)", per, "bytes", baseline=naive_per,
            ratio=naive_per / per, goal="<= 32.8 (640 KiB / 20,000)"),
        Row("journal size, 20,000 taps", m("bytes") / 1024, "KiB", goal="<= 640"),
        Row("recovery (boot) with 20,000 unacked", m("recover_ms"), "ms"),
        Row("render one event for a batch", m("render_us"), "us/event"),
        Row("ack of a 32-event batch", m("ack_ms"), "ms"),
    ]


if __name__ == "__main__":
    report("journal", run())
