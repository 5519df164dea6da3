# QoS 1 retransmission: a PUBLISH without PUBACK is sent again with DUP and the same packet id.
from compat import asyncio
from net.mqtt import MQTTClient
from net.mqttpkt import MQTTError


class FakeWriter:
    def __init__(self):
        self.out = []

    def write(self, b):
        self.out.append(bytes(b))

    async def drain(self):
        pass


def _client():
    c = MQTTClient("dev", "127.0.0.1")
    c._w = FakeWriter()
    c.connected = True
    return c


def test_publish_retransmits_with_dup_then_succeeds():
    c = _client()

    async def run():
        async def ack_second():
            while len(c._w.out) < 4:  # header+payload twice
                await asyncio.sleep(0.01)
            c._waiting[1].set()

        t = asyncio.create_task(ack_second())
        await c.publish("a/b", b"xyz", 1, False, 60)
        await t

    asyncio.run(run())
    first, again = c._w.out[0], c._w.out[2]
    assert first[0] == 0x32 and again[0] == 0x3A  # QoS1; QoS1 + DUP
    assert first[1:] == again[1:]  # same topic and packet id
    assert c._w.out[1] == c._w.out[3] == b"xyz" and c.dups == 1


def test_publish_gives_up_after_retries():
    c = _client()

    async def run():
        try:
            await c.publish("a/b", b"x", 1, False, 20, 2)
        except MQTTError:
            return True
        return False

    assert asyncio.run(run())
    assert len(c._w.out) == 6 and c.dups == 2
    assert [p[0] for p in c._w.out[0::2]] == [0x32, 0x3A, 0x3A]


def test_streamed_payload_is_rendered_again_for_a_retransmission():
    # (nbytes, writer): the payload is written by the writer, called again for the DUP copy.
    c = _client()
    calls = []

    async def writer(w):
        calls.append(1)
        w.write(b"x")
        w.write(b"yz")

    async def run():
        async def ack_second():
            while len(c._w.out) < 6:  # header + 2 payload writes, twice
                await asyncio.sleep(0.01)
            c._waiting[1].set()

        t = asyncio.create_task(ack_second())
        await c.publish("a/b", (3, writer), 1, False, 60)
        await t

    asyncio.run(run())
    assert len(calls) == 2 and c._w.out[0][1] == c._w.out[3][1]  # same remaining length
    assert c._w.out[1:3] == c._w.out[4:6] == [b"x", b"yz"] and c._w.out[3][0] == 0x3A


def test_streamed_payload_cut_short_drops_the_connection():
    c = _client()

    async def writer(w):
        raise ValueError("batch changed")

    async def run():
        try:
            await c.publish("a/b", (3, writer), 1, False, 60)
        except ValueError:
            return True
        return False

    assert asyncio.run(run())
    assert not c.connected and c._w is None


class ShortWriter(FakeWriter):
    """A socket that takes the packet's first bytes, then runs out of heap (Stream.write's
    buffer for the rest, D28-I)."""

    def write(self, b):
        if self.out:
            raise MemoryError
        self.out.append(bytes(b))


def test_plain_payload_cut_short_drops_the_connection():
    # The header went out, the payload did not: the broker would take the next packet's bytes
    # as this one's payload, so the connection goes, as for a streamed payload.
    c = _client()
    c._w = ShortWriter()

    async def run():
        try:
            await c.publish("a/status", b'{"v":1}', 1, True, 60)
        except MemoryError:
            return True
        return False

    assert asyncio.run(run())
    assert not c.connected and c._w is None
