# OTA on the board (docs/ota.md): the slot state (slots.py: trial boots, rollback after the last
# one or a watchdog reset, confirm), the download (ota/fetch.py: chunks to flash, resume after a
# lost connection or a power cut, sha256 and Ed25519 checked before a slot changes, a bad
# signature refused) and the trial's confirmation (ota/trial.py). Under CPython and in the VM.
import hashlib
import os
import sys

from fwhelpers import rmtree, tempdir

# The cases chdir into a scratch flash; the VM's import paths are relative to the checkout.
_here = os.getcwd()
sys.path[:] = [p if not p or p[0] in "/." else _here + "/" + p for p in sys.path]

import slots  # noqa: E402
from compat import asyncio, sleep_ms  # noqa: E402

# A release signed by tools/release.py's scheme with the test key (seed: sha256 of "qadam test
# release key"); the image is 10,000 bytes: ten chunks, two windows.
PUB = "735f66354cde884358877db5f722ea457241e7308e7ad695e99aacd3b6308df5"
SHA = "00a62ed2080abd6258ee53b428ef168f78a93b83d7fede14d081009d8ca93ebf"
SIG = ("f1e04370614d3e9f3ac789388506faae59ecf82920a1ef1f69b8dc65d55efdc6"
       "c6020247c5ee31749eb4ac99420b125fa11d4063fcc14b1120249f6d67df0f04")
SIZE = 10000


def part(off, n, flip=-1):
    # Bytes off..off+n of the image (made on the fly: the whole image is too much for the VM's
    # 64 KiB beside the firmware); byte `flip` has a bit flipped.
    b = bytearray(n)
    for i in range(off // 32, (off + n + 31) // 32):
        d = hashlib.sha256(b"img%d" % i).digest()
        for k in range(32):
            p = i * 32 + k - off
            if 0 <= p < n and i * 32 + k < SIZE:
                b[p] = d[k] ^ (1 if i * 32 + k == flip else 0)
    return bytes(b[:max(0, min(n, SIZE - off))])


def file_sha(name):
    h = hashlib.sha256()
    with open(name, "rb") as f:
        while True:
            b = f.read(512)
            if not b:
                break
            h.update(b)
    from binascii import hexlify
    return hexlify(h.digest()).decode()


def in_flash(fn):
    d = tempdir()
    os.chdir(d)
    try:
        with open("slot_a.rom", "wb") as f:
            f.write(b"old image")
        with open("device.json", "w") as f:
            f.write('{"device": "d1", "ota_pub": "%s", "ota_tries": 3}' % PUB)
        fn()
    finally:
        os.chdir(_here)
        rmtree(d)


def test_slots_trial_boots_then_rollback():
    def t():
        assert slots.boot() == "a" and slots.load()["try"] is None
        slots.activate("b", "2.0.0", 3)
        with open("bootfail.cnt", "w") as f:
            f.write("3\n")  # the failed trial boots the supervisor counted
        assert [slots.boot() for _ in range(3)] == ["b", "b", "b"]
        s = slots.load()
        assert s["try"] == "b" and s["left"] == 0 and slots.running(s) == "b"
        assert slots.boot() == "a"  # the fourth boot: back to the confirmed image
        s = slots.load()
        assert s["try"] is None and s["act"] == "a" and s["rb"] == "2.0.0"
        assert "bootfail.cnt" not in os.listdir(".")  # no safe mode for the old image
        assert slots.boot() == "a"
    in_flash(t)


def test_slots_watchdog_reset_on_trial_rolls_back():
    def t():
        slots.activate("b", "2.0.0", 3)
        assert slots.boot() == "b"
        assert slots.boot(wdt=True) == "a" and slots.load()["rb"] == "2.0.0"
        slots.activate("b", "2.0.1", 3)
        with open("wdt.rst", "w"):
            pass  # what the simulator's watchdog leaves
        assert slots.boot(slots.wdt_reset()) == "a" and "wdt.rst" not in os.listdir(".")
    in_flash(t)


def test_slots_confirm_makes_the_trial_image_the_confirmed_one():
    def t():
        slots.activate("b", "2.0.0", 2)
        assert slots.boot() == "b"
        s = slots.confirm()
        assert s["act"] == "b" and s["try"] is None and s["ver"]["b"] == "2.0.0"
        assert [slots.boot() for _ in range(5)] == ["b"] * 5
        with open(slots.STATE, "w") as f:
            f.write("{not json")  # a state file that went bad: slot a, the flashed image
        assert slots.boot() == "a"
    in_flash(t)


class Link:
    def __init__(self):
        self.sent = []

    async def publish(self, t, p, qos=1, retain=False):
        self.sent.append(p)


class Sync:
    def __init__(self):
        self.status = {"fw": "1.0.0", "slot": "a"}
        self.errs = []
        self.key = None
        self.device = "d1"
        self.acked = 0
        self.t_status = "q/v1/dev/d1/status"

    def status_changed(self):
        pass

    def error(self, tag, why):
        self.errs.append(why)


class App:
    def __init__(self, pub=PUB):
        self.cfg = {"device": "d1", "ota_pub": pub}
        self.link = Link()
        self.sync = Sync()
        self.rebooted = 0

    def _reboot(self):
        self.rebooted += 1


def offer(sig=SIG, rid=7):
    return ('{"v":1,"id":%d,"ver":"2.0.0","size":%d,"sha256":"%s","sig":"%s"}'
            % (rid, SIZE, SHA, sig)).encode()


def chunk(flip, off, rid=7):
    return b"QOC1" + rid.to_bytes(4, "big") + off.to_bytes(4, "big") + part(off, 1024, flip)


def _fetch():
    import ota.fetch
    return ota.fetch


async def _serve(app, flip=-1, upto=None):
    # The cloud's side: answer each window request with its chunks, until `upto` bytes.
    import json
    done = 0
    while True:
        await sleep_ms(5)
        reqs = [json.loads(p) for p in app.link.sent[done:]]
        done = len(app.link.sent)
        if not reqs:
            return
        for r in reqs:
            for k in range(r["n"]):
                off = r["off"] + 1024 * k
                if off >= SIZE or upto is not None and off >= upto:
                    return
                _fetch().on_message(app, memoryview(chunk(flip, off)))


async def _rebooted(app):
    for _ in range(100):
        if app.rebooted:
            return
        await sleep_ms(10)
    raise AssertionError(app.sync.status)


def _boot_check():
    # What the bootstrap does at the next power-on (simulator/ota_board.py OTA_MAIN).
    import ota.check
    from compat import unload
    try:
        return ota.check.run() if "ota.chk" in os.listdir(".") else None
    finally:
        unload("ota.check", "ota.ed25519")


def test_download_check_activate():
    async def run():
        app = App()
        _fetch().on_message(app, offer())
        await _serve(app)
        await _rebooted(app)
        assert len(app.link.sent) == 2  # two windows of chunks asked for
        assert slots.load()["try"] is None  # nothing activated by the app itself
        assert "ota.chk" in os.listdir(".") and file_sha("ota.part") == SHA
    def t():
        asyncio.run(run())
        assert _boot_check() is True
        s = slots.load()
        assert s["try"] == "b" and s["left"] == 3 and s["ver"]["b"] == "2.0.0"
        assert file_sha("slot_b.rom") == SHA
        with open("slot_a.rom", "rb") as f:
            assert f.read() == b"old image"
        left = os.listdir(".")
        assert "ota.part" not in left and "ota.new" not in left and "ota.chk" not in left
    in_flash(t)


def _refused(flip=-1, sig=SIG):
    async def run():
        app = App()
        _fetch().on_message(app, offer(sig))
        await _serve(app, flip=flip)
        await _rebooted(app)
    asyncio.run(run())
    assert _boot_check() is False
    assert slots.load()["try"] is None and "slot_b.rom" not in os.listdir(".")
    assert "ota.part" not in os.listdir(".") and "ota.chk" not in os.listdir(".")
    with open("ota.err") as f:
        return f.read()


def test_bad_signature_is_refused_and_no_slot_changes():
    def t():
        bad = SIG[:10] + ("0" if SIG[10] != "0" else "1") + SIG[11:]
        assert "signature" in _refused(sig=bad)
        # A corrupted byte in transit is caught by the sha256 before the signature.
        assert "sha256" in _refused(flip=5000)
        # The next offer clears the old refusal; a board without the release key takes none.
        async def run():
            app = App(pub=None)
            _fetch().on_message(app, offer())
            assert app.sync.status["ota"] == {"id": 7, "err": "no_key"} and not app.link.sent
        asyncio.run(run())
    in_flash(t)


def test_resume_after_disconnect_and_power_cut():
    async def run():
        from compat import unload
        app = App()
        _fetch().on_message(app, offer())
        await _serve(app, upto=3 * 1024)  # the link went down after three chunks
        with open("ota.part", "ab") as f:
            f.write(part(3 * 1024, 100))  # and a chunk was cut short by a power cut
        unload("ota.fetch")  # the power cut: the module and its state are gone
        app = App()
        _fetch().on_message(app, offer())  # the cloud offers the same release again
        await sleep_ms(5)
        import json
        assert json.loads(app.link.sent[0])["off"] == 3 * 1024, app.link.sent
        await _serve(app)
        await _rebooted(app)
    def t():
        asyncio.run(run())
        assert _boot_check() is True and file_sha("slot_b.rom") == SHA
    in_flash(t)


def test_trial_is_confirmed_by_the_clouds_ack_only_with_its_mac():
    def t():
        import ota.trial
        from net.sync import sign
        slots.activate("b", "2.0.0", 3)
        slots.boot()
        s = Sync()
        s.status = {"fw": "2.0.0", "slot": "b", "trial": 2}
        s.key = b"k" * 32
        ota.trial.ack(s, b'{"v":1,"trial":"2.0.0","mac":"00"}')
        assert "trial" in s.status and s.errs == ["mac"] and slots.load()["try"] == "b"
        ota.trial.ack(s, b'{"v":1,"trial":"1.9.0","mac":"%s"}'
                      % sign(s.key, b"d1|trial|1.9.0").encode())  # not the running release
        assert "trial" in s.status
        mac = sign(s.key, b"d1|trial|2.0.0")
        ota.trial.ack(s, b'{"v":1,"trial":"2.0.0","mac":"%s"}' % mac.encode())
        assert "trial" not in s.status and slots.load()["act"] == "b"
    in_flash(t)
