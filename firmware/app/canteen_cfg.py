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
            ds = v.get("days")
            if ds is None:
                return _sets(v.get("periods"))
            # dated sets, today and the next days (the cloud sends 8): bounded, so a menu cannot
            # take the heap
            return isinstance(ds, dict) and len(ds) <= 16 and all(
                len(d) == 10 and d[4] == d[7] == "-" and _sets(p) for d, p in ds.items())
    except Exception:
        return False
    return False


def _sets(ps):
    # {period: {"dish", "id", "allergens", "price", "reduced"}}: the period's set meal
    return isinstance(ps, dict) and len(ps) <= 8 and all(
        isinstance(p.get("allergens", 0), int) and isinstance(p.get("id", 0), int)
        and money(p.get("price", 0)) >= 0
        and money(p.get("reduced", 0)) >= 0 for p in ps.values())
