# Whitelist updates over MQTT (protocol.md "Whitelist updates"). A snapshot (a whole format-1 file)
# or a delta (keys to remove, records to add/replace) arrives in chunks; they are streamed to flash
# in order, CRC-checked as they come, and only a complete, verified list is installed, by one
# os.rename over whitelist.bin: a power cut at any byte leaves the old list or the new one.
# Imported lazily (only while an update is in progress) to keep the resident heap small; the
# App's side of it (chunk, install, fail: the swap of the live list, status, "@wl" lines) is
# here too for the same reason.
import binascii
import os
import struct

from compat import asyncio, emit, unload

CHUNK_MAGIC = b"QWC1"
DELTA_MAGIC = b"QWD1"
# magic, kind, flags, index, count, reserved, version, base, total, crc32 of total, offset
CHUNK_HDR = "<4sBBHHHIIIII"
HDR_SIZE = 32
MAX_CHUNK = 4096  # data bytes per chunk the board accepts (the cloud sends 1024)
MAX_TOTAL = 1 << 20
SNAPSHOT = 0
DELTA = 1
PART = "wl.part"  # chunks being assembled
NEW = "whitelist.new"  # a complete candidate list, renamed over whitelist.bin
LIVE = "whitelist.bin"


class WlError(Exception):
    pass


def cleanup(d="."):
    # At boot: leftovers of an update a reset interrupted are never trusted.
    for n in (PART, NEW):
        try:
            os.remove(d + "/" + n)
        except OSError:
            pass


class Update:
    """One transfer. feed() each chunk payload in arrival order; True when the object is
    complete and verified (then `await install(current_version)`)."""

    def __init__(self, d="."):
        self.d = d
        self.key = None  # (kind, version, base, count, total, crc) of the transfer
        self.f = None
        self.next = 0
        self.got = 0
        self.crc = 0
        self.rcrc = 0  # snapshot: CRC of the record bytes (after its 32-byte header)
        self.hdr = bytearray(HDR_SIZE)  # the object's own header (list or delta)

    def _p(self, n):
        return self.d + "/" + n

    def abort(self):
        if self.f is not None:
            self.f.close()
            self.f = None
        self.key = None
        for n in (PART, NEW):
            try:
                os.remove(self._p(n))
            except OSError:
                pass

    def feed(self, payload):
        mv = memoryview(payload)
        if len(mv) < HDR_SIZE or bytes(mv[0:4]) != CHUNK_MAGIC:
            raise WlError("bad_chunk")
        h = struct.unpack(CHUNK_HDR, mv[:HDR_SIZE])
        kind, idx, cnt, ver, base, total, crc, off = h[1], h[3], h[4], h[6], h[7], h[8], h[9], h[10]
        data = mv[HDR_SIZE:]
        if (kind not in (SNAPSHOT, DELTA) or not cnt or idx >= cnt or total > MAX_TOTAL
                or len(data) > MAX_CHUNK or off + len(data) > total):
            raise WlError("bad_chunk")
        key = (kind, ver, base, cnt, total, crc)
        if idx == 0:
            self.abort()
            self.key = key
            self.f = open(self._p(PART), "wb")
            self.next = self.got = self.crc = self.rcrc = 0
        elif key != self.key:
            return False  # a chunk of a transfer whose start we missed: ignore it
        elif idx < self.next:
            return False  # a re-delivered chunk
        if idx != self.next or off != self.got:
            self.abort()
            raise WlError("gap")
        # The object's 32-byte header comes first (the first chunk must hold it whole).
        if idx == 0:
            if len(data) < HDR_SIZE and total >= HDR_SIZE:
                self.abort()
                raise WlError("bad_chunk")
            self.hdr[:] = data[:HDR_SIZE]
        if kind == SNAPSHOT:
            s = HDR_SIZE - self.got
            self.rcrc = binascii.crc32(data[s:] if s > 0 else data, self.rcrc)
        self.f.write(data)
        self.crc = binascii.crc32(data, self.crc)
        self.got += len(data)
        self.next += 1
        if self.next < cnt:
            return False
        self.f.close()
        self.f = None
        try:
            self._verify()
        except WlError:
            self.abort()
            raise
        return True

    def _verify(self):
        kind, ver, base, cnt, total, crc = self.key
        if self.got != total:
            raise WlError("size")
        if self.crc & 0xFFFFFFFF != crc:
            raise WlError("crc")
        h = self.hdr
        if kind == SNAPSHOT:
            fmt, rsize, lver, n, lcrc = struct.unpack_from("<HHIII", h, 4)
            if bytes(h[0:4]) != b"QWL1" or fmt != 1 or rsize != 12:
                raise WlError("format")
            if lver != ver or total != HDR_SIZE + n * 12:
                raise WlError("header")
            if self.rcrc & 0xFFFFFFFF != lcrc:
                raise WlError("crc")
        else:
            fmt, rsize, dbase, dver, nrem, nadd = struct.unpack_from("<HHIIII", h, 4)
            if bytes(h[0:4]) != DELTA_MAGIC or fmt != 1 or rsize != 12:
                raise WlError("format")
            if dver != ver or dbase != base or total != HDR_SIZE + nrem * 8 + nadd * 12:
                raise WlError("header")

    async def install(self, current):
        """Delta: merge; then rename the candidate over whitelist.bin. -> the new version."""
        kind, ver, base, _, _, _ = self.key
        try:
            if kind == DELTA:
                if base != current:
                    raise WlError("base")
                from store.wlmerge import merge
                await merge(self._p(LIVE), self._p(PART), self._p(NEW), self.hdr)
                os.remove(self._p(PART))
            else:
                _replace(self._p(PART), self._p(NEW))
            _replace(self._p(NEW), self._p(LIVE))
        except WlError:
            self.abort()
            raise
        except OSError:
            self.abort()
            raise WlError("flash") from None
        self.key = None
        return ver

def _replace(src, dst):
    try:
        os.rename(src, dst)  # atomic on POSIX and LittleFS
    except OSError:
        os.remove(dst)  # FAT refuses to rename onto an existing file
        os.rename(src, dst)


# --- the App's side (app.runner.App: wl, wl_version, door, sync, _wlu, _wl_busy) ----------------
def chunk(app, payload):
    if app._wl_busy:
        print("# wl: chunk while installing; dropped")
        return
    try:
        if app._wlu is None:
            app._wlu = Update(".")
        done = app._wlu.feed(payload)
    except Exception as e:  # WlError, flash or heap trouble: the old list stays
        fail(app, e)
        return
    if done:
        app._wl_busy = True
        asyncio.create_task(_install(app))


async def _install(app):
    try:
        ver = await app._wlu.install(app.wl_version)
        from store.whitelist import Whitelist
        new = Whitelist(LIVE, False)  # verified while it was assembled
    except Exception as e:
        fail(app, e)
    else:
        # The event loop runs one task at a time and a tap is decided in one synchronous call,
        # so the swap falls between two taps, never inside a lookup.
        old = app.wl
        app.wl = app.door.wl = new
        if old is not None:
            old.close()
        app.wl_version = app.sync.status["wl"] = ver
        app.sync.status.pop("wl_err", None)
        emit("wl", {"installed": ver})
        app.sync.status_changed()
        app._wlu = None
        unload("store.wlupdate", "store.wlmerge")
    app._wl_busy = False


def fail(app, e):
    reason = e.args[0] if e.args and isinstance(e.args[0], str) else type(e).__name__
    if app._wlu is not None:
        try:
            app._wlu.abort()
        except Exception:
            pass
    app._wlu = None
    unload("store.wlupdate", "store.wlmerge")
    print("# wl: update rejected:", repr(e))
    emit("wl", {"rejected": reason})
    app.sync.status["wl_err"] = reason
    app.sync.error("wl", reason)
    app.sync.status_changed()
