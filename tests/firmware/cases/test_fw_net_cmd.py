# Command parsing/validation (protocol.md "Commands"), the NTP reply parser, the clock reference.
import json

from fwhelpers import rmtree, tempdir, write
from net.clock import Clock
from net.cmd import CmdError, parse, reply, save_config
from net.ntp import NTP_DELTA
from net.ntp import parse as ntp_parse


def _err(payload):
    try:
        parse(payload)
    except CmdError as e:
        return e.args[0], e.id
    raise AssertionError("accepted " + repr(payload))


def test_parse_commands():
    assert parse(b'{"v":1,"id":"a","cmd":"open"}')[:2] == ("a", "open")
    assert parse(b'{"v":1,"id":7,"cmd":"reboot"}')[:2] == (7, "reboot")
    cid, cmd, c = parse(b'{"v":1,"id":"x","cmd":"config","set":{"relay_ms":500,"reader":"out"}}')
    assert cmd == "config" and c["set"] == {"relay_ms": 500, "reader": "out"}
    assert _err(b"nope") == ("bad_json", None)
    assert _err(b"[1]") == ("bad_json", None)
    assert _err(b'{"v":1,"cmd":"open"}') == ("bad_id", None)
    assert _err(b'{"v":1,"id":true,"cmd":"open"}') == ("bad_id", None)
    assert _err(b'{"v":2,"id":"a","cmd":"open"}') == ("bad_version", "a")
    assert _err(b'{"v":1,"id":"a","cmd":"fly"}') == ("unknown_cmd", "a")
    assert _err(b'{"v":1,"id":"a","cmd":"config"}') == ("bad_config", "a")
    assert _err(b'{"v":1,"id":"a","cmd":"config","set":{"site_key":"00"}}') == (
        "key_not_allowed:site_key", "a")
    assert _err(b'{"v":1,"id":"a","cmd":"config","set":{"relay_ms":5}}') == (
        "bad_value:relay_ms", "a")
    assert _err(b'{"v":1,"id":"a","cmd":"config","set":{"batch":true}}') == ("bad_value:batch", "a")
    assert _err(b'{"v":1,"id":"a","cmd":"config","set":{"reader":"side"}}') == (
        "bad_value:reader", "a")
    assert json.loads(reply("a", False, "unknown_cmd")) == {
        "v": 1, "id": "a", "ok": False, "error": "unknown_cmd"}
    assert json.loads(reply(3, True)) == {"v": 1, "id": 3, "ok": True}


def test_save_config_is_a_merge():
    d = tempdir()
    try:
        p = d + "/device.json"
        write(p, b'{"device":"g","relay_ms":300,"mqtt":{"port":1}}')
        save_config(p, {"relay_ms": 900})
        with open(p) as f:
            cfg = json.load(f)
        assert cfg == {"device": "g", "relay_ms": 900, "mqtt": {"port": 1}}
    finally:
        rmtree(d)


def test_ntp_parse_and_clock_reference():
    pkt = bytearray(48)
    pkt[0] = 0x24  # version 4, mode 4 (server)
    pkt[1] = 2
    secs = 1760000000 + NTP_DELTA
    pkt[40:44] = bytes([(secs >> 24) & 255, (secs >> 16) & 255, (secs >> 8) & 255, secs & 255])
    assert ntp_parse(bytes(pkt)) == 1760000000
    pkt[1] = 0  # kiss-of-death / unsynchronised server
    assert ntp_parse(bytes(pkt)) is None
    assert ntp_parse(b"short") is None
    c = Clock(False)
    seen = []
    c.on_sync = lambda: seen.append(1)
    assert c.status() == {"synced": 0}
    c.set(1760000000)
    st = c.status()
    assert st["synced"] == 1 and abs(st["t"] - 1760000000) <= 1 and st["up"] >= 0
    assert abs(c.now() - 1760000000) <= 1 and seen == [1]
    c.set(1760000100)
    assert seen == [1]  # only the first sync is announced
