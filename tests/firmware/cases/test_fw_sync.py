import gc
import json

from fwhelpers import rmtree, tempdir
from net.sync import Sync, parse_ack
from store.journal import Journal


def test_parse_ack():
    assert parse_ack(b'{"v":1,"boot":7,"first":12,"last":40}') == (7, 12, 40)
    for bad in (b"nope", b'{"v":2,"boot":7,"first":1,"last":2}', b'{"v":1,"boot":7}',
                b'{"v":1,"boot":"7","first":1,"last":2}', b"[1]"):
        assert parse_ack(bad) is None, bad


def _ev(b, s):
    return b'{"boot":%d,"seq":%d,"kind":"tap"}' % (b, s)


def test_batches_one_boot_consecutive_and_capped():
    d = tempdir()
    try:
        j = Journal(d)
        for s in range(1, 41):
            j.append(5, s, _ev(5, s))
        j.append(6, 1, _ev(6, 1))
        # 32 of these events take ~1.2 KB; a smaller buffer than the board's keeps this case
        # from failing on heap fragmentation in the 64 KB unit VM (not what it tests).
        gc.collect()
        sy = Sync(j, "gate-1", "p", batch=32, batch_bytes=2048)
        assert sy.t_events == "p/v1/dev/gate-1/events" and sy.t_ack == "p/v1/dev/gate-1/ack"
        boot, first, last, n = sy.next_batch()
        raw = bytes(sy.buf[:n])
        assert (boot, first, last) == (5, 1, 32)
        assert raw.startswith(b'{"v":1,"dev":"gate-1","boot":5,"events":[' + _ev(5, 1) + b",")
        obj = json.loads(raw)
        assert [e["seq"] for e in obj["events"]] == list(range(1, 33))
        sy.on_message("p/v1/dev/gate-1/ack", b'{"v":1,"boot":5,"first":1,"last":32}')
        assert j.count == 9 and sy.acked == 32
        assert sy.next_batch()[:3] == (5, 33, 40)  # stops at the boot change
        sy.on_message("p/v1/dev/gate-1/ack", b'{"v":1,"boot":6,"first":1,"last":1}')
        assert j.count == 9  # does not cover the oldest: ignored
        j.ack(5, 33, 40)
        boot, first, last, n = sy.next_batch()
        assert (boot, first, last) == (6, 1, 1)
        head = b'{"v":1,"dev":"gate-1","boot":6,"events":['
        assert bytes(sy.buf[:n]) == head + _ev(6, 1) + b"]}"
        j.append(6, 2, _ev(6, 2) + b" " * 400)
        j.append(6, 3, _ev(6, 3))
        small = Sync(Journal(d), "gate-1", "p", batch_bytes=512)
        assert small.next_batch()[:3] == (6, 1, 2)  # the buffer caps the batch
    finally:
        rmtree(d)
