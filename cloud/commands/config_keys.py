"""The device.json keys a ``config`` command from the API may set, with the board's own limits
(firmware/net/cmd.py CONFIG, READERS; firmware/app/canteen_cfg.py), checked here so a bad value is
a 422 and never queued. tests/cloud/test_commands_api.py reads the firmware's table and checks
this one against it.

``menu`` and ``balances`` are not here: the menu comes from the planned menus
(:mod:`cloud.commands.menu`), the balances from the balance push (D15)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from cloud.domain.errors import Invalid

# firmware/net/cmd.py CONFIG: key -> (lowest, highest), integers
CONFIG: dict[str, tuple[int, int]] = {
    "heartbeat_s": (10, 86400),
    "relay_ms": (50, 10000),
    "ack_timeout_ms": (500, 600000),
    "batch": (1, 32),
}
READERS = ("in", "out", "canteen")  # firmware/net/cmd.py READERS
MODES = ("door", "turnstile", "canteen")  # firmware/app/canteen_cfg.py valid("mode")
# firmware/app/canteen_cfg.py: integer canteen keys and their ranges
CANTEEN_INTS: dict[str, tuple[int, int]] = {"override_s": (0, 600), "tz_offset_min": (-720, 840)}
CANTEEN_MONEY = ("offline_credit_limit",)
PERIOD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")  # also the menus.period rule (0021)
_HM = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
MAX_KEYS = 16

ALLOWED = (*CONFIG, "reader", "mode", *CANTEEN_INTS, *CANTEEN_MONEY, "meal_periods")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _money(v: Any) -> bool:
    # the board's money(): digits, at most two decimals, not negative
    s = str(v) if _int(v) else v
    if not isinstance(s, str) or not re.fullmatch(r"[0-9]{1,10}(\.[0-9]{1,2})?", s):
        return False
    try:
        return Decimal(s) >= 0
    except InvalidOperation:
        return False


def _minutes(s: Any) -> int | None:
    m = _HM.match(s) if isinstance(s, str) else None
    if m is None or int(m.group(2)) > 59:
        return None
    return int(m.group(1)) * 60 + int(m.group(2))


def _periods(v: Any) -> bool:
    if not isinstance(v, dict) or not 1 <= len(v) <= 8:
        return False
    for name, span in v.items():
        if not PERIOD_NAME.match(name) or not isinstance(span, list) or len(span) != 2:
            return False
        a, b = _minutes(span[0]), _minutes(span[1])
        if a is None or b is None or not 0 <= a < b <= 1440:
            return False
    return True


def check_set(st: Any) -> dict[str, Any]:
    """The ``set`` of a config command, checked key by key; raises Invalid (422) naming the key."""
    if not isinstance(st, dict) or not st:
        raise Invalid("set", "a config command needs a non-empty object of device.json keys")
    if len(st) > MAX_KEYS:
        raise Invalid("set", f"at most {MAX_KEYS} keys per command")
    for k, v in st.items():
        if k in CONFIG:
            lo, hi = CONFIG[k]
            ok = _int(v) and lo <= v <= hi
            why = f"an integer {lo}..{hi}"
        elif k in CANTEEN_INTS:
            lo, hi = CANTEEN_INTS[k]
            ok = _int(v) and lo <= v <= hi
            why = f"an integer {lo}..{hi}"
        elif k == "reader":
            ok, why = v in READERS, "one of " + ", ".join(READERS)
        elif k == "mode":
            ok, why = v in MODES, "one of " + ", ".join(MODES)
        elif k in CANTEEN_MONEY:
            ok, why = _money(v), 'money: "650" or "650.50", not negative'
        elif k == "meal_periods":
            ok = _periods(v)
            why = '{"lunch": ["12:00", "14:30"], ...}: 1-8 periods, start before end, 00:00..24:00'
        else:
            raise Invalid(f"set.{k}", f"key {k!r} may not be set; allowed: {', '.join(ALLOWED)}")
        if not ok:
            raise Invalid(f"set.{k}", f"{k} must be {why}")
    return st
