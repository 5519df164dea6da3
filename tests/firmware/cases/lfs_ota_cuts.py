# OTA on MicroPython's LittleFS with power cuts at block level (issue #14 items 6 and 7): a cut at
# any program/erase operation of an update (the offer kept, chunks appended, the download handed
# to the bootstrap, its read-back and signature check, the rename into the slot, the slot state
# written, a trial boot counted down, the confirmation, a rollback) leaves a board that boots: the slot it picks holds a whole,
# verified image of the release the slot state names. VM only; run by
# tests/firmware/test_lfs_ota_powercut.py (lfs_cuts.py describes the flash and the mount).
#
# Each boot: arm a cut, mount, slots.boot() (as the bootstrap does), check the picked slot's
# image by sha256 against the release the state says it holds, then run until the power goes or
# the board restarts: on trial, confirm (its first ack) or not (a bad release: it restarts);
# otherwise take an update (ota/fetch.py with the cloud's side played here: offers, chunks).
import binascii
import gc
import hashlib
import os
import sys

import vfs
from blockdev import Flash

from compat import asyncio, sleep_ms

D = "/flash"
BLOCKS = 64
CUTS = 300
SEED = 27141
OPS = 120  # a cut after 0..OPS-1 program/erase operations of a boot
PUB = "735f66354cde884358877db5f722ea457241e7308e7ad695e99aacd3b6308df5"
# (version, size, sha256, Ed25519 signature) of the releases, signed with the test key
# (tests/firmware/cases/test_fw_ota.py); 1.0.0 is the flashed image in slot a.
RELS = (
    ("1.0.0", 5000, "93aa4e288cb359a45a4d8a7716358ad631e99ce529baad02e7ceeef399580ac7",
     "25c039a4915f095d9c2ffe0044c8ef7d77a51367b231e7f88290a12876cc5753"
     "5647266747dab23511c03f3c551b34ed85abb075f782c799336546d70225f50f"),
    ("2.0.0", 6000, "ab18dc420394d77210c34bc924d01bb4391ba1d3795c86c28c4cdb9ca4953519",
     "c8c27e6d355ed4550a15157e3533d14c0b5ed95b1aa78bea34e30f53fd9022be"
     "fe2a07ada98f99dd9ff106c3c6be79b630f99a34e0b9a74edfb768cf7612760d"),
    ("3.0.0", 7100, "6ca1f59e93889db3569226758365abbb60f78064d2fe0e402f2afbcc6d174214",
     "df4ee97c599041cd8cc725c6ac93aff9f388af71d27e44767e0325b40fb48165"
     "b665d2384d39d139930fc3016c2ac928e7a7ed065dab3fcc2aa41cf744011c0e"),
    ("4.0.0", 9000, "88835828ea06b56ff1d4116ad64732c49aafdd33ea92d71c9af9a1a7de167724",
     "e60106cc1aa2e043faa93dcde7032197feb49a106c087972a714b58806bd2619"
     "c7d53e467587447269374822dfef56295abdbfc009e3235206590a0e4ed6b20a"),
)


class Rng:
    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFF or 1

    def below(self, n):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x % n


def _count(st, k):
    st[k] = st.get(k, 0) + 1


def _rel(ver):
    for r in RELS:
        if r[0] == ver:
            return r
    raise AssertionError(ver)


PH = ["boot"]  # the step under way when the power went
CH = bytearray(12 + 1024)  # one chunk, made in place (a new one per chunk cut the heap up)


def part(ver, off):
    # Bytes off..off+1024 of release `ver`'s image into CH[12:], made 32 bytes at a time; -> n.
    n = max(0, min(1024, _rel(ver)[1] - off))
    v = ver.encode()
    for i in range(off // 32, (off + n + 31) // 32):
        d = hashlib.sha256(b"%s|%d" % (v, i)).digest()
        for k in range(32):
            p = i * 32 + k - off
            if 0 <= p < n:
                CH[12 + p] = d[k]
    return n


def file_sha(name):
    h = hashlib.sha256()
    buf = bytearray(256)
    with open(name, "rb") as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
    return binascii.hexlify(h.digest()).decode()


def write_image(name, ver):
    with open(name, "wb") as f:
        for off in range(0, _rel(ver)[1], 1024):
            f.write(memoryview(CH)[12:12 + part(ver, off)])


class Link:
    def __init__(self):
        self.sent = []

    async def publish(self, t, p, qos=1, retain=False):
        self.sent.append(p)


class Sync:
    def __init__(self, st):
        self.status = st
        self.key = None
        self.device = "d1"
        self.t_status = "q/v1/dev/d1/status"

    def status_changed(self):
        pass

    def error(self, tag, why):
        pass


class App:
    def __init__(self, st):
        self.cfg = {"device": "d1", "ota_pub": PUB}
        self.link = Link()
        self.sync = Sync(st)
        self.rebooted = 0

    def _reboot(self):
        self.rebooted += 1


def _unload():
    for n in ("ota.fetch", "ota.ed25519", "ota.check", "slots"):
        sys.modules.pop(n, None)


async def _update(fl, rng, slots, st, s):
    # The cloud offers the next release the board does not run (and did not roll back); the
    # board fetches it in windows of chunks; a lost link (at random) makes the cloud offer again.
    import json

    import ota.fetch as fetch
    cur = s["ver"].get(slots.running(s), "1.0.0")
    k = [r[0] for r in RELS].index(cur)
    for i in range(1, len(RELS)):
        rel = RELS[(k + i) % len(RELS)]
        if rel[0] != s.get("rb"):
            break
    ver, size, sha, sig = rel
    rid = 1 + [r[0] for r in RELS].index(ver)
    app = App({"fw": cur, "slot": slots.running(s), "rb": s.get("rb")})
    o = b'{"v":1,"id":%d,"ver":"%s","size":%d,"sha256":"%s","sig":"%s"}' % (
        rid, ver.encode(), size, sha.encode(), sig.encode())
    PH[0] = "offer"
    fetch.on_message(app, o)
    await sleep_ms(0)
    PH[0] = "download"
    if app.link.sent:
        off = json.loads(app.link.sent[0])["off"]
        _count(st, "resumed" if off else "fresh")
    done = 0
    for _ in range(200):
        if app.rebooted or fl.dead():
            break
        reqs = app.link.sent[done:]
        done = len(app.link.sent)
        if rng.below(6) == 0:
            fetch.on_message(app, o)  # the link dropped; the cloud offers again
            _count(st, "offered again")
            await sleep_ms(0)
            continue
        for p in reqs:
            r = json.loads(p)
            for j in range(r["n"]):
                off = r["off"] + 1024 * j
                if off >= size:
                    break
                n = part(ver, off)
                CH[0:4] = b"QOC1"
                CH[4:8] = rid.to_bytes(4, "big")
                CH[8:12] = off.to_bytes(4, "big")
                fetch.on_message(app, memoryview(CH)[:12 + n])
        await sleep_ms(5)
    if fl.dead():
        raise OSError(5)
    assert app.rebooted, app.sync.status
    _count(st, "downloaded")


def _session(fl, rng, st):
    import slots
    PH[0] = "boot"
    booted = slots.boot(slots.wdt_reset())
    _count(st, "booted")
    s = slots.load()
    ver = s["ver"].get(booted, "1.0.0")
    assert slots.running(s) == booted, (booted, s)
    assert file_sha(slots.path(booted)) == _rel(ver)[2], (booted, ver, s)  # a whole image
    if "ota.chk" in os.listdir():  # as the bootstrap: check and activate a download
        PH[0] = "check"
        gc.collect()  # the bootstrap checks in a heap with nothing else in it
        import ota.check
        if ota.check.run():
            _count(st, "activated")
            return  # the reset into the new image
        try:
            with open("ota.err") as f:
                _count(st, "refused " + f.read())
        except OSError:  # activated before the cut; only ota.chk was left
            _count(st, "check after activation")
        s = slots.load()
    if s.get("try"):
        _count(st, "trial boot")
        if rng.below(3) == 0:
            PH[0] = "confirm"
            slots.confirm()  # its first cloud ack
            _count(st, "confirmed")
        return  # else: a bad release restarts without an ack
    if s.get("rb"):
        _count(st, "after rollback")
    asyncio.run(_update(fl, rng, slots, st, s))


def test_lfs_ota_power_cuts():
    rng = Rng(SEED)
    fl = Flash("/tmp/qadam-lfs-ota-" + binascii.hexlify(os.urandom(4)).decode(), BLOCKS)
    here = os.getcwd()
    sys.path[:] = [p if not p or p[0] in "/." else here + "/" + p for p in sys.path]
    st = {}
    try:
        vfs.VfsLfs2.mkfs(fl.view())
        vfs.mount(fl.view(), D)
        os.chdir(D)
        write_image("slot_a.rom", "1.0.0")  # the flash tool's image
        with open("device.json", "w") as f:
            f.write('{"ota_pub": "%s", "ota_tries": 2}' % PUB)
        os.chdir(here)
        vfs.umount(D)
        while fl.cuts < CUTS:
            fl.arm(rng.below(OPS), rng)
            vfs.mount(fl.view(), D)  # a mount that fails would be a board that formats: fail
            os.chdir(D)
            try:
                _session(fl, rng, st)
            except Exception as e:
                if not fl.dead():
                    raise
                _count(st, "cut " + PH[0])
                if not isinstance(e, OSError):
                    raise
            os.chdir(here)
            vfs.umount(D)
            _unload()
            asyncio.new_event_loop()  # the dead board's tasks go with it
            gc.collect()
        fl.arm(-1, rng)
        vfs.mount(fl.view(), D)
        os.chdir(D)
        _session(fl, rng, st)  # and it boots once more without a cut
        os.chdir(here)
        vfs.umount(D)
        kv = " ".join(k.replace(" ", "_") + "=" + str(v) for k, v in sorted(st.items()))
        print("@stats", "ota", "cuts=" + str(fl.cuts), "reprog=" + str(fl.reprog), kv)
        # (Where the random cuts land varies with the event loop's timing; a cut at every
        # operation of each step that writes the flash is lfs_ota_steps.py's, deterministic.)
        for k in ("booted", "trial boot", "confirmed", "after rollback", "resumed", "activated",
                  "cut download"):
            assert st.get(k, 0) > 0, (k, st)
    finally:
        os.chdir(here)
        try:
            vfs.umount(D)
        except OSError:
            pass
        fl.close()

