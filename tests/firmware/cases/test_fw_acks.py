# Which acks a board applies (protocol.md "Ack", issue #13 item 6) and the boot floor command
# (protocol.md "Boot floor", item 7): only acks for events it published and still holds, on a
# board with an ack key only with the cloud's mac; everything else is ignored, the journal keeps
# its records and the board's errors say why. CPython and the MicroPython VM.
import gc
import json

from compat import asyncio
from fwhelpers import read, rmtree, tempdir
from net.sync import Sync, parse_ack, sign
from store.journal import Journal
from synchelpers import Stream, ack, in_dir, journal

gc.collect()
from net.cmd import CmdError, floor, parse  # noqa: E402  (after a collect: the heap is tight)

KEY = bytes(range(32))
T = "p/v1/dev/gate-1/ack"


def _publish(sy):
    # What _send_oldest does around link.publish: measure the batch, render it into the socket.
    sy._out = sy.next_batch()
    asyncio.run(sy.write_batch(Stream(keep=False)))
    b = sy._out
    sy._out = None
    return b[2:5]


def test_hmac_sha256_rfc4231_vectors():
    # RFC 4231 test cases 1, 2 and 6 (a key longer than the block is hashed first); the board
    # sends the first 16 bytes as hex.
    for key, msg, want in (
        (
            b"\x0b" * 20,
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            b"\xaa" * 131,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
    ):
        assert sign(key, msg) == want[:32], key


def test_parse_ack_keeps_the_mac():
    assert parse_ack(b'{"v":1,"boot":7,"first":12,"last":40}') == (7, 12, 40, None)
    assert parse_ack(b'{"v":1,"boot":7,"first":1,"last":2,"mac":"ab"}') == (7, 1, 2, "ab")


def test_the_issues_attack_an_ack_for_everything_erases_nothing():
    # Issue #13 item 6: {"v":1,"boot":B,"first":1,"last":1000000000} on the ack topic of a board
    # with unsent taps. Before: the journal emptied. Now: ignored, recorded, nothing trimmed.
    d = tempdir()
    try:
        j = journal(d, 30)
        sy = Sync(j, "gate-1", "p", batch=10)
        attack = b'{"v":1,"boot":4,"first":1,"last":1000000000}'
        in_dir(d, lambda: sy.on_message(T, attack))  # nothing published yet
        assert j.count == 30 and sy.acked == 0
        assert _publish(sy) == (4, 1, 10)
        in_dir(d, lambda: sy.on_message(T, attack))  # reaches past what was published
        assert j.count == 30 and sy.acked == 0
        in_dir(d, lambda: sy.on_message(T, ack(5, 1, 10)))  # a boot it never published
        in_dir(d, lambda: sy.on_message(T, ack(4, 1, 11)))  # one event too far
        assert j.count == 30
        assert [e[1:] for e in sy.err] == [["ack", "unsent", 4]]
        assert "ack unsent" in in_dir(d, lambda: read("err.log").decode())
        in_dir(d, lambda: sy.on_message(T, ack(4, 1, 10)))  # the real one
        assert j.count == 20 and sy.acked == 10
        # The next batch starts at the oldest record: head..last is what was published.
        assert _publish(sy) == (4, 11, 20)
        in_dir(d, lambda: sy.on_message(T, ack(4, 11, 30)))
        assert j.count == 20
        in_dir(d, lambda: sy.on_message(T, ack(4, 11, 20)))
        assert j.count == 10
    finally:
        rmtree(d)


def test_held_acks_are_checked_when_applied():
    d = tempdir()
    try:
        j = journal(d, 5)
        sy = Sync(j, "gate-1", "p")
        sy._out = sy.next_batch()
        in_dir(d, lambda: sy.on_message(T, ack(4, 1, 99)))  # while the batch is written
        in_dir(d, lambda: sy.on_message(T, ack(4, 1, 5)))
        assert j.count == 5 and len(sy._held) == 2
        asyncio.run(sy.write_batch(Stream(keep=False)))
        sy._out = None
        held, sy._held = sy._held, None
        in_dir(d, lambda: [sy._apply(a) for a in held])
        assert j.count == 0 and sy.acked == 5 and sy.err[0][1:3] == ["ack", "unsent"]
    finally:
        rmtree(d)


def test_a_board_with_a_key_needs_the_clouds_mac():
    d = tempdir()
    try:
        j = journal(d, 8)
        sy = Sync(j, "gate-1", "p", key=KEY)
        assert _publish(sy) == (4, 1, 8)
        in_dir(d, lambda: sy.on_message(T, ack(4, 1, 8)))  # no mac
        in_dir(d, lambda: sy.on_message(T, ack(4, 1, 8, key=bytes(32))))  # another key
        in_dir(d, lambda: sy.on_message(T, ack(4, 1, 8, key=KEY, dev="gate-2")))  # another board
        forged = json.loads(ack(4, 1, 7, key=KEY))
        forged["last"] = 8  # a mac of another range
        in_dir(d, lambda: sy.on_message(T, json.dumps(forged).encode()))
        assert j.count == 8 and sy.err[-1][1:] == ["ack", "mac", 4]
        in_dir(d, lambda: sy.on_message(T, ack(4, 1, 8, key=KEY)))
        assert j.count == 0 and sy.acked == 8
    finally:
        rmtree(d)


class _Door:
    boot = 3
    seq = 17


class _App:
    def __init__(self, sy):
        self.sync = sy
        self.door = _Door()
        self.boot = 3


def test_floor_command_moves_the_boot_past_the_clouds():
    d = tempdir()
    try:
        assert parse(b'{"v":1,"id":"floor-40","cmd":"floor","boot":40}')[1] == "floor"
        sy = Sync(Journal(d), "gate-1", "p", status={"boot": 3})
        app = _App(sy)
        for bad in (0, -1, True, "40", 0x7FFFFFFF):
            try:
                floor(app, {"boot": bad}, "x")
                raise AssertionError("accepted " + repr(bad))
            except CmdError as e:
                assert e.args[0] == "bad_value:boot"
        in_dir(d, lambda: floor(app, {"boot": 40}, "x"))
        assert app.boot == app.door.boot == sy.status["boot"] == 41 and app.door.seq == 0
        assert int(read(d + "/boot.cnt")) == 41 and sy.hb  # the status goes out at once
        in_dir(d, lambda: floor(app, {"boot": 12}, "y"))  # already past it: nothing changes
        assert app.boot == 41 and int(read(d + "/boot.cnt")) == 41
    finally:
        rmtree(d)


def test_floor_command_on_a_board_with_a_key_needs_the_mac():
    d = tempdir()
    try:
        sy = Sync(Journal(d), "gate-1", "p", status={"boot": 3}, key=KEY)
        app = _App(sy)
        for mac in (None, sign(KEY, b"gate-1|41")):
            try:
                in_dir(d, lambda m=mac: floor(app, {"boot": 40, "mac": m}, "x"))
                raise AssertionError("accepted")
            except CmdError as e:
                assert e.args[0] == "bad_mac"
        assert app.boot == 3
        in_dir(d, lambda: floor(app, {"boot": 40, "mac": sign(KEY, b"gate-1|40")}, "x"))
        assert app.boot == 41
    finally:
        rmtree(d)
