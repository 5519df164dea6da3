# The `config` command's check of the canteen keys (net.cmd; protocol.md "Canteen"). Its own
# module so a door board validating a command does not load the canteen.
from app.canteen_core import _hm, money


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

