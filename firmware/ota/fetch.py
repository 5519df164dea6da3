# OTA download on the board (protocol.md "OTA", docs/ota.md): the cloud offers a release on
# {prefix}/v1/dev/{device}/ota, the board asks for its bytes in windows of chunks on .../ota/req
# and writes them into ota.part; the offer is kept in ota.new, so after a reconnect or a power cut
# the next offer of the same release resumes at the partial file's size. A complete download
# is handed to the bootstrap (ota.new renamed to ota.chk) and the board restarts: before the app
# runs, ota/check.py reads the image back from flash (size, sha256), verifies its Ed25519
# signature with the release key of device.json ("ota_pub"), renames it into the slot that is
# not running and puts it on trial (slots.activate). Anything wrong throws the download away,
# says why in the status ("ota": {"id", "err"}) and changes no slot.
# Imported lazily, only while an offer or a chunk comes, and unloaded when a download ends.
#
# Few names (D29-G): importing a module interns every name and short string it holds (qstrs),
# for good. A door's boot leaves its qstr pool nearly full; one qstr too many at the first offer
# made MicroPython allocate the next pool, twice the last (640 entries: 7 KB in one piece),
# which a running door's cut-up heap does not have. So: constants are const() (inlined, no
# name), file names are literals, functions and arguments reuse names the firmware interned
# already (status, fail, window, cur, cut, reboot; id, doc, off, n).
import json
import os

from compat import asyncio, emit, sleep_ms

try:
    from micropython import const
except ImportError:  # CPython (the firmware's tests run there too)
    def const(x):
        return x

MAGIC = b"QOC1"  # chunk: magic, release id (u32 BE), offset (u32 BE), data
_HDR = const(12)
_WIN = const(8)  # chunks asked for at once
_MAX_SIZE = const(1048576)  # what a slot holds (1 MiB)
# ota.part: the image as it comes; ota.new: the offer being fetched; ota.chk: a complete
# download the bootstrap checks and activates (ota/check.py); ota.err: why the last one was
# refused (reported in the status: ota/trial.py).

cur = None  # the offer being downloaded: [id, ver, size, sha256 hex, sig hex, next offset, end]


def status(app, doc):
    s = app.sync
    s.status["ota"] = doc
    s.status_changed()


def fail(app, id, why):
    global cur
    cur = None
    for n in ("ota.part", "ota.new", "ota.err"):
        try:
            os.remove(n)
        except OSError:
            pass
    print("#", "ota", id, why)
    app.sync.error("ota", why)
    status(app, {"id": id, "err": why})
    from compat import unload
    unload("ota.fetch")


def window(app):
    c = cur
    n = min(_WIN, (c[2] - c[5] + 1023) // 1024)
    c[6] = c[5] + n * 1024  # this window's end (bytes)
    p = '{"v":1,"id":%d,"off":%d,"n":%d}' % (c[0], c[5], n)
    asyncio.create_task(app.link.publish(app.sync.t_status[:-6] + "ota/req", p, 1, False))


def offer(app, doc):
    """A release offered: start, resume or refuse (the reason in the status)."""
    try:
        id, ver, size, sha, sig = doc["id"], doc["ver"], doc["size"], doc["sha256"], doc["sig"]
        ok = (isinstance(id, int) and isinstance(ver, str) and 0 < len(ver) <= 32
              and isinstance(size, int) and len(sha) == 64 and len(sig) == 128)
    except (KeyError, TypeError):
        ok = False
    if not ok:
        print("#", "ota", "bad", "offer")
        return
    st = app.sync.status
    if "trial" in st or ver == st.get("fw"):
        return  # on trial: nothing new until it is confirmed or gone; or it runs it already
    if not app.cfg.get("ota_pub"):
        return fail(app, id, "no_key")
    if ver == st.get("rb"):
        return fail(app, id, "rolled_back")
    if not 0 < size <= _MAX_SIZE:
        return fail(app, id, "size")
    if cur is not None and cur[0] == id:
        if cur[5] < size:
            window(app)  # offered again: the chunks asked for may have been lost
        return
    start(app, {"id": id, "ver": ver, "size": size, "sha256": sha, "sig": sig})


def start(app, doc):
    # The offer's download, started or resumed from what the flash holds. Apart from offer():
    # a module loaded from a file holds each function's bytecode in one block, the smaller
    # the better in a cut-up heap.
    global cur
    id, size = doc["id"], doc["size"]
    try:
        with open("ota.new") as f:  # parsed from the file: no copy of its ~270 bytes
            same = json.load(f) == doc
    except (OSError, ValueError):
        same = False
    have = 0
    if same:
        try:
            have = os.stat("ota.part")[6]
        except OSError:
            pass
    off = have if have == size else have - have % 1024  # resume on a chunk boundary
    if not same or off > size:
        have = off = 0
        try:
            os.remove("ota.err")  # a new release: the last one's refusal is old news
        except OSError:
            pass
        with open("ota.new.tmp", "w") as f:
            json.dump(doc, f)
        os.rename("ota.new.tmp", "ota.new")
    if not off:
        open("ota.part", "wb").close()
    elif have != off:  # a partial chunk at the end (a power cut): cut back to the boundary
        cut(off)
    cur = [id, doc["ver"], size, doc["sha256"], doc["sig"], off, 0]
    emit("ota", {"id": id, "ver": doc["ver"], "off": off, "size": size})
    status(app, {"id": id, "off": off})
    if off == size:  # all there already (the check was cut short): check it again
        asyncio.create_task(reboot(app))
    else:
        window(app)


def cut(off):
    # Keep the first `off` bytes of ota.part (MicroPython files have no truncate).
    os.rename("ota.part", "ota.part.tmp")
    buf = bytearray(512)
    with open("ota.part.tmp", "rb") as src, open("ota.part", "wb") as dst:
        n = off
        while n:
            k = src.readinto(memoryview(buf)[:min(n, 512)])
            if not k:
                break
            dst.write(memoryview(buf)[:k])
            n -= k
    os.remove("ota.part.tmp")


def chunk(app, b):
    c = cur
    if c is None or len(b) < _HDR:
        return
    # The id and the offset (u32 BE) read in place: no format string, no tuple.
    id = b[4] << 24 | b[5] << 16 | b[6] << 8 | b[7]
    off = b[8] << 24 | b[9] << 16 | b[10] << 8 | b[11]
    if id != c[0] or off != c[5]:
        return  # another release's, or out of order: the window is asked for again
    n = len(b) - _HDR
    if n <= 0 or n > 1024 or off + n > c[2] or n < 1024 and off + n != c[2]:
        return fail(app, id, "chunk")
    # Written at its offset, straight from the receive buffer's view ("r+b": no "ab" mode name).
    with open("ota.part", "r+b") as f:
        f.seek(off)
        f.write(b[_HDR:])
    c[5] = off + n
    if c[5] == c[2]:
        status(app, {"id": id, "off": c[5], "check": 1})
        asyncio.create_task(reboot(app))
    elif c[5] >= c[6]:
        status(app, {"id": id, "off": c[5]})
        window(app)


async def reboot(app):
    # All bytes are in ota.part: the offer becomes the check's order (one rename), and the board
    # restarts; the bootstrap checks the image before the app runs (ota/check.py), in a heap
    # still in one piece (the verifier's code and big numbers need blocks the running app's
    # heap no longer has).
    global cur
    c = cur
    cur = None
    os.rename("ota.new", "ota.chk")
    app.sync.status["trial"] = -1  # no other offer is taken before the reset
    emit("ota", {"id": c[0], "ver": c[1], "check": 1})
    status(app, {"id": c[0], "ver": c[1], "reboot": 1})
    await sleep_ms(200)  # the status goes out first
    app._reboot()


def on_message(app, payload):
    # payload: a view into the client's receive buffer, written to flash from there. The magic
    # is compared byte by byte: no slice and no bytes object made for each chunk.
    p, m = payload, MAGIC
    if len(p) > 3 and p[0] == m[0] and p[1] == m[1] and p[2] == m[2] and p[3] == m[3]:
        chunk(app, p)
        return
    try:
        try:
            o = json.loads(p)  # MicroPython parses the view in place
        except TypeError:  # CPython's json takes no memoryview
            o = json.loads(bytes(p))
    except ValueError:
        return
    if isinstance(o, dict) and o.get("v") == 1:
        offer(app, o)
