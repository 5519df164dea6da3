# The window of batches in flight (net/sync.py, protocol.md "Ack", D25-L): several batches go
# out before the first ack; acks may come in any order and each still names its exact range;
# the journal trims only from its oldest record; a batch whose ack was lost is sent again, alone
# and byte for byte; forged and unsent acks are still ignored. CPython and the MicroPython VM.
import json

from compat import asyncio, sleep_ms
from fwhelpers import rmtree, tempdir
from net.sync import Sync
from store.journal import Journal
from synchelpers import Stream, ack, in_dir, journal

T = "p/v1/dev/gate-1/ack"
KEY = bytes(range(32))


class _Link:
    """What Sync needs of net.link.Link: `up` and publish(); keeps every events payload."""

    up = True

    def __init__(self):
        self.sent = []  # (first, last, payload) of each events publish, in order

    async def publish(self, topic, payload, qos=0, retain=False):
        if isinstance(payload, tuple):  # (nbytes, writer), as net.mqtt takes it
            n, writer = payload
            s = Stream()
            await writer(s)
            assert len(s.out) == n
            payload = s.out
        if topic.endswith("/events"):
            ev = json.loads(payload)["events"]
            self.sent.append((ev[0]["seq"], ev[-1]["seq"], payload))

    def ranges(self):
        return [(f, la) for f, la, _ in self.sent]


def _ack(first, last, boot=4, key=None):
    return ack(boot, first, last, key)


def _board(d, n, window=4, batch=10, timeout=60000, key=None):
    j = journal(d, n)
    sy = Sync(j, "gate-1", "p", batch=batch, ack_timeout_ms=timeout, window=window, key=key)
    sy.link = _Link()
    return j, sy


def test_several_batches_go_out_before_the_first_ack():
    d = tempdir()
    try:
        j, sy = _board(d, 60)
        asyncio.run(sy._send())
        # Four batches, consecutive from the oldest record, none acked yet; the fifth waits.
        assert sy.link.ranges() == [(1, 10), (11, 20), (21, 30), (31, 40)]
        assert j.count == 60 and sy._w[2] == 4 and sy._sent == (4, 40)
        asyncio.run(sy._send())  # the window is full: nothing more
        assert len(sy.link.sent) == 4
        sy.on_message(T, _ack(1, 10))
        asyncio.run(sy._send())  # one slot free: the next batch after the last one in flight
        assert sy.link.ranges()[4:] == [(41, 50)] and j.count == 50
        events = [e["seq"] for _, _, p in sy.link.sent for e in json.loads(p)["events"]]
        assert events == list(range(1, 51))  # in order, none twice
    finally:
        rmtree(d)


def test_acks_out_of_order_trim_only_from_the_oldest():
    d = tempdir()
    try:
        j, sy = _board(d, 40)
        asyncio.run(sy._send())
        cur = j.cur_n
        for f in (31, 11, 21):  # every batch but the oldest
            sy.on_message(T, _ack(f, f + 9))
        assert j.count == 40 and sy.acked == 0 and j.cur_n == cur  # nothing trimmed or written
        assert Journal(d).count == 40  # a reset now would re-send everything: nothing lost
        sy.on_message(T, _ack(1, 10))
        # The oldest came: the four batches go at once, with one write of the ack cursor.
        assert j.count == 0 and sy.acked == 40 and j.cur_n == cur + 1 and sy._w[2] == 0
        assert Journal(d).count == 0
        sy.on_message(T, _ack(11, 20))  # a late duplicate: ignored
        assert sy.acked == 40 and not sy.err
    finally:
        rmtree(d)


def test_an_ack_in_the_middle_waits_for_the_older_ones():
    d = tempdir()
    try:
        j, sy = _board(d, 40)
        asyncio.run(sy._send())
        sy.on_message(T, _ack(21, 30))
        sy.on_message(T, _ack(1, 10))
        assert j.count == 30 and sy.acked == 10  # 21..30 waits for 11..20
        sy.on_message(T, _ack(11, 20))
        assert j.count == 10 and sy.acked == 30  # 11..30 together
        sy.on_message(T, _ack(31, 40))
        assert j.count == 0
    finally:
        rmtree(d)


def test_forged_and_unsent_acks_are_still_ignored_with_a_window():
    d = tempdir()
    try:
        j, sy = _board(d, 60, key=KEY)
        asyncio.run(sy._send())
        assert sy._sent == (4, 40)
        in_dir(d, lambda: sy.on_message(T, _ack(41, 50, key=KEY)))  # not published yet
        in_dir(d, lambda: sy.on_message(T, _ack(1, 1000000000, key=KEY)))
        in_dir(d, lambda: sy.on_message(T, _ack(11, 20)))  # a batch in flight, no mac
        in_dir(d, lambda: sy.on_message(T, _ack(21, 30, key=bytes(32))))  # another key
        assert [e[1:3] for e in sy.err] == [["ack", "unsent"], ["ack", "mac"]]
        # None of them counted: the real acks of 1..10 and 31..40 trim only 1..10.
        in_dir(d, lambda: sy.on_message(T, _ack(31, 40, key=KEY)))
        in_dir(d, lambda: sy.on_message(T, _ack(1, 10, key=KEY)))
        assert j.count == 50 and sy.acked == 10
        in_dir(d, lambda: sy.on_message(T, _ack(11, 20, key=KEY)))
        in_dir(d, lambda: sy.on_message(T, _ack(21, 30, key=KEY)))
        assert j.count == 20 and sy.acked == 40  # 31..40 was remembered
    finally:
        rmtree(d)


def test_live_taps_wait_for_the_ack_unless_a_full_batch_is_there():
    d = tempdir()
    try:
        j, sy = _board(d, 3)
        asyncio.run(sy._send())
        for s in (4, 5):  # two taps while 1..3 is in flight
            j.append(4, s, b'{"boot":4,"seq":%d,"kind":"tap"}' % s)
        asyncio.run(sy._send())
        assert sy.link.ranges() == [(1, 3)]  # as with one batch in flight
        for s in range(6, 14):
            j.append(4, s, b'{"boot":4,"seq":%d,"kind":"tap"}' % s)
        asyncio.run(sy._send())
        assert sy.link.ranges() == [(1, 3), (4, 13)]  # a full batch goes
        sy.on_message(T, _ack(1, 3))
        sy.on_message(T, _ack(4, 13))
        j.append(4, 14, b'{"boot":4,"seq":14,"kind":"tap"}')
        asyncio.run(sy._send())
        assert sy.link.ranges()[2:] == [(14, 14)] and j.count == 1
    finally:
        rmtree(d)


def test_after_a_reconnect_the_window_starts_again_from_the_oldest():
    d = tempdir()
    try:
        j, sy = _board(d, 40)
        asyncio.run(sy._send())
        sy.on_message(T, _ack(21, 30))  # remembered in its slot ...
        first = sy.link.sent[0][2]
        sy._w[2] = 0  # ... which a reconnect forgets (on_up)
        asyncio.run(sy._send())
        assert sy.link.ranges()[4:] == [(1, 10), (11, 20), (21, 30), (31, 40)]
        assert sy.link.sent[4][2] == first  # byte-identical
        sy.on_message(T, _ack(21, 30))  # the late ack of the first window counts again
        sy.on_message(T, _ack(1, 10))
        sy.on_message(T, _ack(11, 20))
        assert j.count == 10
    finally:
        rmtree(d)


async def _until(cond, ms=20000):
    # Waits for a condition of the run; the bound only turns a hang into a failure.
    while not cond():
        assert ms > 0, "condition not reached"
        await sleep_ms(10)
        ms -= 10


def test_a_lost_ack_sends_only_that_batch_again_byte_for_byte():
    d = tempdir()
    try:
        j, sy = _board(d, 40, timeout=2000)  # the acks below come well within it, even loaded
        link = sy.link

        async def main():
            t = asyncio.create_task(sy.run())
            sy.wake()
            await _until(lambda: len(link.sent) == 4)
            for f in (1, 21, 31):  # the ack of 11..20 is lost
                sy.on_message(T, _ack(f, f + 9))
            assert j.count == 30
            await _until(lambda: len(link.sent) == 5)  # after the ack timeout
            sy.on_message(T, _ack(11, 20))
            await _until(lambda: j.count == 0)
            t.cancel()
            await sleep_ms(0)

        in_dir(d, lambda: asyncio.run(main()))
        assert link.ranges() == [(1, 10), (11, 20), (21, 30), (31, 40), (11, 20)]
        assert link.sent[4][2] == link.sent[1][2]  # the same bytes
        assert sy.acked == 40 and sy._w[2] == 0
        assert sy.err[0][1:] == ["ack", "timeout", 1]
    finally:
        rmtree(d)


def test_a_cloud_that_acks_nothing_gets_one_batch_per_timeout():
    # The ingest is down: after the window times out, one batch goes out again at a time (the
    # oldest), not the window; once it is acked the others follow, each once.
    d = tempdir()
    try:
        j, sy = _board(d, 40, timeout=300)
        link = sy.link

        async def main():
            t = asyncio.create_task(sy.run())
            sy.wake()
            await _until(lambda: len(link.sent) >= 6)
            sy.on_message(T, _ack(1, 10))  # the cloud is back
            k = 7
            for f in (11, 21, 31):
                await _until(lambda k=k: len(link.sent) >= k)
                sy.on_message(T, _ack(f, f + 9))
                k += 1
            await _until(lambda: j.count == 0)
            t.cancel()
            await sleep_ms(0)

        in_dir(d, lambda: asyncio.run(main()))
        r = link.ranges()
        assert r[:6] == [(1, 10), (11, 20), (21, 30), (31, 40), (1, 10), (1, 10)], r
        # Then each of the others once more (a timeout of the oldest may repeat it meanwhile).
        assert [x for x in r[6:] if x != (1, 10)] == [(11, 20), (21, 30), (31, 40)], r
    finally:
        rmtree(d)


def test_the_newest_batch_sent_again_takes_the_taps_that_came_since():
    # Nothing follows the newest batch of the window, so when its ack times out it goes again
    # with the events journaled meanwhile (as the one batch in flight always did): a cloud
    # whose ack was lost still gets the new taps.
    d = tempdir()
    try:
        j, sy = _board(d, 3, timeout=1500)  # one re-send between two looks, even loaded
        link = sy.link

        async def main():
            t = asyncio.create_task(sy.run())
            sy.wake()
            await _until(lambda: len(link.sent) == 1)
            for s in (4, 5):
                j.append(4, s, b'{"boot":4,"seq":%d,"kind":"tap"}' % s)
            sy.wake()
            await _until(lambda: len(link.sent) == 2)  # after the ack timeout
            sy.on_message(T, _ack(1, 5))
            await _until(lambda: j.count == 0)
            t.cancel()
            await sleep_ms(0)

        in_dir(d, lambda: asyncio.run(main()))
        assert link.ranges() == [(1, 3), (1, 5)]
        assert link.sent[1][2].startswith(link.sent[0][2][:-2])  # the same events first
    finally:
        rmtree(d)
