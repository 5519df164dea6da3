# Remote commands (protocol.md "Commands"): {prefix}/v1/dev/{device}/cmd, JSON
# {"v":1,"id":..,"cmd":"open"|"reboot"|"resync"|"config"|"diag", ...}; the board answers on
# .../cmd/res {"v":1,"id":..,"ok":true|false,"error":..} ("diag": and "diag":{...}).
# Imported lazily, on the first command.
import json

from compat import write_atomic

CMDS = ("open", "reboot", "resync", "config", "floor", "diag")
# device.json keys a "config" command may set, with their ranges (anything else is refused).
CONFIG = {"heartbeat_s": (10, 86400), "relay_ms": (50, 10000), "ack_timeout_ms": (500, 600000),
          "batch": (1, 32)}
READERS = ("in", "out", "canteen")
# Canteen keys (protocol.md "Canteen"), checked by app.canteen_cfg.valid.
CANTEEN = ("mode", "menu", "meal_periods", "offline_credit_limit", "balances", "override_s",
           "tz_offset_min")


class CmdError(Exception):
    def __init__(self, msg, cid=None):
        super().__init__(msg)
        self.id = cid


def parse(payload):
    """-> (id, cmd, the whole command dict). Raises CmdError (with .id when known)."""
    try:
        try:
            c = json.loads(payload)
        except TypeError:  # CPython's json takes no memoryview (MicroPython's does)
            c = json.loads(bytes(payload))
    except (ValueError, TypeError):
        raise CmdError("bad_json") from None
    if not isinstance(c, dict):
        raise CmdError("bad_json")
    cid = c.get("id")
    if isinstance(cid, bool) or not isinstance(cid, (int, str)):
        raise CmdError("bad_id")
    if c.get("v") != 1:
        raise CmdError("bad_version", cid)
    cmd = c.get("cmd")
    if cmd not in CMDS:
        raise CmdError("unknown_cmd", cid)
    if cmd == "config":
        check_config(c.get("set"), cid)
    return cid, cmd, c


def read(payload, cut=False):
    """The command as it arrives (a view of the MQTT receive buffer, valid only now): parsed at
    once -> (id, cmd, dict), or the CmdError to answer. A command bigger than the receive buffer
    (`cut`: only its head is there, net.mqtt) is answered "too_big", with its id if the head has it (the cloud
    writes "id" second, cloud/commands/queue.py), and changes nothing."""
    if cut:
        h = bytes(payload[:64])
        i = h.find(b'"id":') + 5
        j = i
        while 4 < i and j < len(h) and 47 < h[j] < 58:
            j += 1
        return CmdError("too_big", int(h[i:j]) if j > i else None)
    try:
        return parse(payload)
    except CmdError as e:
        return e


def check_config(st, cid=None):
    if not isinstance(st, dict) or not st:
        raise CmdError("bad_config", cid)
    for k in st:
        v = st[k]
        if k == "reader":
            ok = v in READERS
        elif k in CANTEEN:
            from app.canteen_cfg import valid
            ok = valid(k, v)
        elif k in CONFIG:
            lo, hi = CONFIG[k]
            ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        else:
            raise CmdError("key_not_allowed:" + str(k), cid)
        if not ok:
            raise CmdError("bad_value:" + k, cid)
    return st


def reply(cid, ok, error=None):
    r = {"v": 1, "id": cid, "ok": ok}
    if error:
        r["error"] = error
    return json.dumps(r)


def save_config(path, st):
    """Merge `st` into device.json, atomically (write-then-rename). Read and written as a stream:
    the file (with an 8-day menu ~1.5 KB) is never one string in the heap, let alone two (the
    string and its bytes): a canteen board's heap, cut up by TLS and taps, may not have such a
    block although it has 17 KB free (D28-I)."""
    import gc
    gc.collect()
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(st)
    write_atomic(path, lambda f: json.dump(cfg, f))
    return cfg


async def handle(app, box):
    """Run one command (`box`: a list holding what read() made of it, taken out here so that
    nothing keeps the command once it ran) on the App (app/runner.py) and publish the reply on
    .../cmd/res."""
    cid, after, res = None, None, None
    got = box.pop()
    try:
        if isinstance(got, CmdError):
            raise got
        cid, cmd, c = got
        last = app._last_cmd
        if last and last[0] == cid:
            res = last[1]  # re-delivered: answer again, do not run again
        elif cmd == "open":
            app.door._pulse()
            app.board.led.ok()
        elif cmd == "reboot":
            after = app._reboot
        elif cmd == "resync":
            app.sync._w[2] = 0  # re-send the journal from its oldest record (no window)
            app.sync.wake()
            if app._wlu is not None:
                app._wlu.abort()
                app._wlu = None
            await app.link.publish(app.t_wl + "/req", '{"v":1,"have":%d,"want":"snapshot"}'
                                   % app.wl_version, 1, False)
        elif cmd == "floor":
            floor(app, c, cid)
        elif cmd == "diag":
            res = diag(app, cid)
        elif cmd == "config":
            st = c["set"]
            if getattr(app, "canteen", None) is not None and any(k in CANTEEN for k in st):
                # "balances" go to canteen.bal, the menu to menu.bin, not into device.json
                app.canteen.configure(st, True)
            if st:
                app.cfg.update(st)  # an old menu goes now, before device.json is read in
                save_config("device.json", st)
                _apply(app, st)
        if res is None:
            res = reply(cid, True)
    except CmdError as e:
        cid = e.id
        res = reply(cid, False, e.args[0])
    except Exception as e:
        print("# cmd failed:", repr(e))
        if e.args == ("too_big",):  # a menu bigger than the canteen's buffer (app.canteen)
            res = reply(cid, False, "too_big")
        else:
            res = reply(cid, False, "failed")
    got = c = st = None  # a menu command's tree is garbage before the reply waits for its ack
    app._last_cmd = (cid, res)
    from compat import emit
    emit("cmd", {"res": res})
    try:
        await app.link.publish(app.t_cmd + "/res", res, 1, False)
    except Exception as e:
        print("# cmd: reply failed:", repr(e))
    if after:
        after()


def floor(app, c, cid):
    """The cloud holds events of boot `c["boot"]` or newer for this device (a re-flashed board
    restarted its counter; protocol.md "Boot floor"): persist a boot counter above it and restart
    the boot in place, so new events get identities never used. Events already journaled keep
    theirs (invariant 2). With an ack key the command must carry the cloud's mac."""
    f = c.get("boot")
    if isinstance(f, bool) or not isinstance(f, int) or not 0 < f < 0x7FFFFFFF:
        raise CmdError("bad_value:boot", cid)
    s = app.sync
    if s.key:
        from net.sync import sign
        if c.get("mac") != sign(s.key, b"%s|%d" % (s.device.encode(), f)):
            raise CmdError("bad_mac", cid)
    if app.boot > f:
        return  # already past it
    b = f + 1
    write_atomic("boot.cnt", b"%d\n" % b)  # store.journal.BOOT, read by next_boot at start-up
    app.boot = app.door.boot = s.status["boot"] = b
    app.door.seq = 0
    s.status_changed()  # the retained status says the new boot at once
    from compat import emit
    emit("boot", {"boot": b, "floor": f})


def diag(app, cid):
    """The reply to "diag": the board's status as it would publish it now (errors, heap,
    journal, clock, whitelist), the tail of err.log (the errors before a reset) and the days of
    a canteen board's menu."""
    try:
        with open("err.log", "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 240))
            log = f.read().decode()
    except (OSError, ValueError):  # no log yet; a cut through a multi-byte character
        log = ""
    cn = getattr(app, "canteen", None)
    days = []
    if cn is not None:
        m = cn.menu  # packed (app.canteen_cfg.pack): bytes used, then a record per set
        n = m[4] | m[5] << 8
        o = 6
        while o < n:
            d = m[o:o + 10].decode()
            if d[0] != "\0" and d not in days:
                days.append(d)
            o += 28 + m[o + 26] + m[o + 27]
        days.sort()
    return '{"v":1,"id":%s,"ok":true,"diag":{"status":%s,"log":%s,"menu":%s}}' % (
        json.dumps(cid), app.sync.status_payload(), json.dumps(log), json.dumps(days))


def _apply(app, st):
    # What can change at run time does; device.json holds it for the next boot too.
    s, d = app.sync, app.door
    if "heartbeat_s" in st:
        s.heartbeat_ms = st["heartbeat_s"] * 1000
        s.status_changed()
    if "ack_timeout_ms" in st:
        s.ack_timeout_ms = st["ack_timeout_ms"]
    if "batch" in st:
        s.batch = st["batch"]
    if "relay_ms" in st:
        d.relay_ms = st["relay_ms"]
    if "reader" in st:
        d.reader = st["reader"]
