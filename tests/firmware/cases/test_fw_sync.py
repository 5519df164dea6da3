import gc
import json
import os

from compat import asyncio
from fwhelpers import rmtree, tempdir
from net.sync import Sync, parse_ack
from store.journal import Journal
from synchelpers import Stream


def _payload(sy):
    # The batch as it goes out: measured by next_batch, rendered from the journal by write_batch.
    b = sy._out = sy.next_batch()
    s = Stream()
    asyncio.run(sy.write_batch(s))
    sy._out = None
    assert len(s.out) == b[5]  # exactly the length the PUBLISH header announced
    return b[2:], s.out


def test_parse_ack():
    assert parse_ack(b'{"v":1,"boot":7,"first":12,"last":40}') == (7, 12, 40, None)
    for bad in (
        b"nope",
        b'{"v":2,"boot":7,"first":1,"last":2}',
        b'{"v":1,"boot":7}',
        b'{"v":1,"boot":"7","first":1,"last":2}',
        b"[1]",
    ):
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
        gc.collect()
        sy = Sync(j, "gate-1", "p", batch=32, batch_bytes=2048)
        assert sy.t_events == "p/v1/dev/gate-1/events" and sy.t_ack == "p/v1/dev/gate-1/ack"
        (boot, first, last, n), raw = _payload(sy)
        assert (boot, first, last) == (5, 1, 32)
        assert _payload(sy)[1] == raw  # a retransmission renders the same bytes
        assert raw.startswith(b'{"v":1,"dev":"gate-1","boot":5,"events":[' + _ev(5, 1) + b",")
        obj = json.loads(raw)
        assert [e["seq"] for e in obj["events"]] == list(range(1, 33))
        sy.on_message("p/v1/dev/gate-1/ack", b'{"v":1,"boot":5,"first":1,"last":32}')
        assert j.count == 9 and sy.acked == 32
        assert sy.next_batch()[2:5] == (5, 33, 40)  # stops at the boot change
        here = os.getcwd()
        os.chdir(d)  # the ignored ack is recorded in err.log, in the board's flash
        try:
            sy.on_message("p/v1/dev/gate-1/ack", b'{"v":1,"boot":6,"first":1,"last":1}')
        finally:
            os.chdir(here)
        assert j.count == 9  # a boot it never published: ignored
        j.ack(5, 33, 40)
        (boot, first, last, n), raw = _payload(sy)
        assert (boot, first, last) == (6, 1, 1)
        head = b'{"v":1,"dev":"gate-1","boot":6,"events":['
        assert raw == head + _ev(6, 1) + b"]}"
        j.append(6, 2, _ev(6, 2) + b" " * 400)
        j.append(6, 3, _ev(6, 3))
        small = Sync(Journal(d), "gate-1", "p", batch_bytes=512)
        assert small.next_batch()[2:5] == (6, 1, 2)  # batch_bytes caps the batch
    finally:
        rmtree(d)


def test_acks_wait_while_a_batch_is_written():
    # An ack arriving while the batch is being written (or retransmitted) from the journal is
    # applied once the publish returns, so the records do not go from under the writer.
    d = tempdir()
    try:
        j = Journal(d, seg_size=160)  # three of these events to a segment
        for s in range(1, 5):
            j.append(5, s, _ev(5, s))
        assert len(j.segs) == 2
        sy = Sync(j, "gate-1", "p", batch=3)
        sy._out = sy.next_batch()
        assert sy._out[2:5] == (5, 1, 3)  # the first segment
        sy.on_message("p/v1/dev/gate-1/ack", b'{"v":1,"boot":5,"first":1,"last":3}')
        assert j.count == 4 and sy._held == [(5, 1, 3, None)]
        s = Stream()
        asyncio.run(sy.write_batch(s))
        assert json.loads(s.out)["events"][2]["seq"] == 3
        # The journal lost the records meanwhile (their segment is gone): the writer refuses to
        # fall short silently.
        j.ack(5, 1, 3)
        assert len(j.segs) == 1
        try:
            asyncio.run(sy.write_batch(Stream()))
            raise AssertionError("expected ValueError")
        except ValueError:
            pass
    finally:
        rmtree(d)
