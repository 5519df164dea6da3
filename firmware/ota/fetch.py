# OTA download on the board (protocol.md "OTA", docs/ota.md): the cloud offers a release on
# {prefix}/v1/dev/{device}/ota, the board asks for its bytes in windows of chunks on .../ota/req
# and appends them to ota.part; the offer is kept in ota.new, so after a reconnect or a power cut
# the next offer of the same release resumes at the partial file's size. A complete download
# is handed to the bootstrap (ota.new renamed to ota.chk) and the board restarts: before the app
# runs, ota/check.py reads the image back from flash (size, sha256), verifies its Ed25519
# signature with the release key of device.json ("ota_pub"), renames it into the slot that is
# not running and puts it on trial (slots.activate). Anything wrong throws the download away,
# says why in the status ("ota": {"id", "err"}) and changes no slot.
# Imported lazily, only while an offer or a chunk comes, and unloaded when a download ends.
import json
import os
import struct

from compat import asyncio, emit, sleep_ms

PART = "ota.part"
META = "ota.new"
CHK = "ota.chk"  # a complete download the bootstrap checks and activates (ota/check.py)
ERR = "ota.err"  # why the last one was refused (reported in the status: ota/trial.py)
MAGIC = b"QOC1"  # chunk: magic, release id (u32 BE), offset (u32 BE), data
HDR = 12
WIN = 8  # chunks asked for at once
MAX_SIZE = 1 << 20  # what a slot holds

_cur = None  # the offer being downloaded: [id, ver, size, sha256 hex, sig hex, next offset, end]


def _status(app, st):
    s = app.sync
    s.status["ota"] = st
    s.status_changed()


def _fail(app, rid, why):
    global _cur
    _cur = None
    for n in (PART, META, ERR):
        try:
            os.remove(n)
        except OSError:
            pass
    print("#", "ota", rid, why)
    app.sync.error("ota", why)
    _status(app, {"id": rid, "err": why})
    from compat import unload
    unload("ota.fetch")


def _ask(app):
    c = _cur
    n = min(WIN, (c[2] - c[5] + 1023) // 1024)
    c[6] = c[5] + n * 1024  # this window's end (bytes)
    p = '{"v":1,"id":%d,"off":%d,"n":%d}' % (c[0], c[5], n)
    asyncio.create_task(app.link.publish(app.sync.t_status[:-6] + "ota/req", p, 1, False))


def offer(app, o):
    """A release offered: start, resume or refuse (the reason in the status)."""
    global _cur
    try:
        rid, ver, size, sha, sig = o["id"], o["ver"], o["size"], o["sha256"], o["sig"]
        ok = (isinstance(rid, int) and isinstance(ver, str) and 0 < len(ver) <= 32
              and isinstance(size, int) and len(sha) == 64 and len(sig) == 128)
    except (KeyError, TypeError):
        ok = False
    if not ok:
        print("#", "ota", "bad offer")
        return
    st = app.sync.status
    if "trial" in st or ver == st.get("fw"):
        return  # on trial: nothing new until it is confirmed or gone; or it runs it already
    if not app.cfg.get("ota_pub"):
        return _fail(app, rid, "no_key")
    if ver == st.get("rb"):
        return _fail(app, rid, "rolled_back")
    if not 0 < size <= MAX_SIZE:
        return _fail(app, rid, "size")
    if _cur is not None and _cur[0] == rid:
        if _cur[5] < size:
            _ask(app)  # offered again: the chunks asked for may have been lost
        return
    m = {"id": rid, "ver": ver, "size": size, "sha256": sha, "sig": sig}
    try:
        with open(META) as f:
            same = json.loads(f.read()) == m
    except (OSError, ValueError):
        same = False
    have = 0
    if same:
        try:
            have = os.stat(PART)[6]
        except OSError:
            pass
    off = have if have == size else have - have % 1024  # resume on a chunk boundary
    if not same or off > size:
        have = off = 0
        try:
            os.remove(ERR)  # a new release: the last one's refusal is old news
        except OSError:
            pass
        tmp = META + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(m))
        os.rename(tmp, META)
    if not off:
        open(PART, "wb").close()
    elif have != off:  # a partial chunk at the end (a power cut): cut back to the boundary
        _trim(off)
    _cur = [rid, ver, size, sha, sig, off, 0]
    emit("ota", {"id": rid, "ver": ver, "off": off, "size": size})
    _status(app, {"id": rid, "off": off})
    if off == size:  # all there already (the check was cut short): check it again
        asyncio.create_task(_finish(app))
    else:
        _ask(app)


def _trim(off):
    # Keep the first `off` bytes of ota.part (MicroPython files have no truncate).
    os.rename(PART, PART + ".old")
    buf = bytearray(512)
    with open(PART + ".old", "rb") as src, open(PART, "wb") as dst:
        n = off
        while n:
            k = src.readinto(memoryview(buf)[:min(n, 512)])
            if not k:
                break
            dst.write(memoryview(buf)[:k])
            n -= k
    os.remove(PART + ".old")


def chunk(app, b):
    c = _cur
    if c is None or len(b) < HDR:
        return
    rid, off = struct.unpack_from(">II", b, 4)
    if rid != c[0] or off != c[5]:
        return  # another release's, or out of order: the window is asked for again
    n = len(b) - HDR
    if n <= 0 or n > 1024 or off + n > c[2] or n < 1024 and off + n != c[2]:
        return _fail(app, rid, "chunk")
    with open(PART, "ab") as f:
        f.write(b[HDR:])
    c[5] = off + n
    if c[5] == c[2]:
        _status(app, {"id": rid, "off": c[5], "check": 1})
        asyncio.create_task(_finish(app))
    elif c[5] >= c[6]:
        _status(app, {"id": rid, "off": c[5]})
        _ask(app)


async def _finish(app):
    # All bytes are in ota.part: the offer becomes the check's order (one rename), and the board
    # restarts; the bootstrap checks the image before the app runs (ota/check.py), in a heap
    # still in one piece (the verifier's code and big numbers need blocks the running app's
    # heap no longer has).
    global _cur
    c = _cur
    _cur = None
    os.rename(META, CHK)
    app.sync.status["trial"] = -1  # no other offer is taken before the reset
    emit("ota", {"id": c[0], "ver": c[1], "check": 1})
    _status(app, {"id": c[0], "ver": c[1], "reboot": 1})
    await sleep_ms(200)  # the status goes out first
    app._reboot()


def on_message(app, payload):
    # payload: a view into the client's receive buffer, written to flash from there
    if bytes(payload[:4]) == MAGIC:
        chunk(app, payload)
        return
    try:
        o = json.loads(bytes(payload))
    except ValueError:
        return
    if isinstance(o, dict) and o.get("v") == 1:
        offer(app, o)
