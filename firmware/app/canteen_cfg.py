# The `config` command's check of the canteen keys (net.cmd; protocol.md "Canteen") and the
# menu packed for the board (D28-I). Its own module so a door board validating a command does not
# load the canteen; a canteen board keeps it loaded (app.runner).
#
# The menu packed into one bytes object: as dicts and lists (D27-A) an 8-day menu took ~6 KB of
# the heap in some 200 small objects, and a new one arriving as a command needed as much again
# while the old one lived, so a board with TLS ran out or found no block among the pieces. Packed
# it is ~1 KB in one of two buffers made at start (the new menu is packed into the spare one),
# and a command's JSON tree is garbage as soon as it is packed. Layout: the menu's reduced price
# and the bytes used (<iH; 0 used: no menu), then a record per set: the date (10 bytes, ANY for the
# one-day form without a date), id, allergens, price, reduced price (SET: <iIii, tiyn), the
# lengths of the period's and the dish's names (<BB), the two names (UTF-8). The lookups are
# app.canteen_rules'.
import struct

from app.canteen_core import _hm, money
from app.canteen_rules import ANY, HEAD, SET


def valid(k, v):
    """The `config` command's check of a canteen key (net.cmd)."""
    try:
        if k == "mode":
            return v in ("door", "turnstile", "canteen")
        if k in ("offline_credit_limit", "balances"):
            if k == "balances":
                return isinstance(v, dict) and all(len(c) == 16 and int(c, 16) >= 0 and
                                                   money(a) >= 0 for c, a in v.items())
            return money(v) >= 0
        if k in ("override_s", "tz_offset_min"):
            return isinstance(v, int) and not isinstance(v, bool) and (
                0 <= v <= 600 if k == "override_s" else -720 <= v <= 840)
        if k == "meal_periods":
            return isinstance(v, dict) and all(0 <= _hm(a) < _hm(b) <= 1440
                                               for a, b in v.values())
        if k == "menu":
            # {"reduced": R, "days": {date: {period: [id, allergens, price, name]}}} (the cloud
            # sends today and the next 7; at most 16, so a menu cannot take the heap) or one day
            # {"date", "periods": {period: {...}}}. Plain loops: each generator is one more code
            # object in RAM.
            money(v.get("reduced", 0))
            ds = v.get("days")
            if ds is None:
                ds = {"": v.get("periods")}
            if len(ds) > 16:
                return False
            for d, ps in ds.items():
                if d and (len(d) != 10 or d[4] != "-"):
                    return False
                for p in ps.values():
                    if isinstance(p, list):
                        if len(p) != 4 or not isinstance(p[3], str):
                            return False
                        p = {"id": p[0], "allergens": p[1], "price": p[2]}
                    if not isinstance(p.get("allergens", 0), int) or not isinstance(
                            p.get("id", 0), int):
                        return False
                    money(p.get("price", 0))  # ValueError if not a non-negative amount
                    money(p.get("reduced", 0))
            return True
    except Exception:
        return False
    return False


def pack(mn, out):
    """A menu as a command or device.json holds it (valid() checked it) packed into `out` (a
    bytearray the canteen allocated at start, while the heap was in one piece: a heap cut up by
    TLS and taps may have no block for it later) -> False if it does not fit (nothing written).
    A set is [id, allergens, price, name] with the menu's reduced price, or (the one-day form's)
    a dict with its own "reduced"."""
    ds = mn.get("days")
    if ds is None:
        ds = {mn.get("date") or "": mn.get("periods") or {}}
    n = HEAD
    for d in ds:
        ps = ds[d]
        for p in ps:
            s = ps[p]
            n += 28 + min(len(p.encode()), 255) + min(len(
                (s[3] if isinstance(s, list) else s.get("dish", "")).encode()), 255)
    if n > len(out):
        return False
    red = money(mn.get("reduced", 0))
    struct.pack_into("<iH", out, 0, red, n)
    o = HEAD
    for d in ds:
        ps = ds[d]
        for p in ps:
            s = ps[p]
            if isinstance(s, list):
                i, a, pr, r, nm = s[0], s[1], money(s[2]), red, s[3]
            else:
                i, a, pr = s.get("id", 0), s.get("allergens", 0), money(s.get("price", 0))
                r, nm = money(s.get("reduced", 0)), s.get("dish", "")
            pb = p.encode()[:255]
            nb = nm.encode()[:255]
            out[o:o + 10] = d.encode() if d else ANY
            struct.pack_into(SET, out, o + 10, i, a, pr, r, len(pb), len(nb))
            o += 28
            out[o:o + len(pb)] = pb
            o += len(pb)
            out[o:o + len(nb)] = nb
            o += len(nb)
    return True
