# The canteen's decision table (app.canteen; protocol.md "Canteen"): meal period, served this
# period, today's dish vs the card's allergens, meal category, balance or offline credit. A mixin
# of app.canteen.Canteen, its own module so each compiles in a small heap.
from struct import unpack_from

from app.canteen_core import CATS, Served, date_of, fmt, money

ANY = b"\0" * 10  # app.canteen_cfg.pack: a set of the one-day form without a date, for every day
SET = "<iIiiBB"  # app.canteen_cfg.pack: a set's numbers and name lengths, after its date
HEAD = 6  # app.canteen_cfg.pack: the reduced price and the bytes used (<iH), then the sets


class Decide:
    def period_at(self, t, synced):
        """-> ((day, period index) key, name) or (None, None) outside every meal period. With an
        unsynced clock the time cannot be trusted: one pseudo period (day 0, 255) until sync."""
        if not synced:
            return (0, 255), "unsynced"
        t += self.tz * 60
        m = (t // 60) % 1440
        for i, p in enumerate(self.periods):
            if p[0] <= m < p[1]:
                return (t // 86400, i), p[2]
        return None, None

    def dish(self, pk, name):
        """The period's set meal that day (dict) or {} (no menu for that day). The menu (protocol.md
        "Canteen") holds today and the next days, so an offline board keeps blocking on the days
        after; packed by app.canteen_cfg (D28-I: one buffer, records of 28 bytes + names). The
        one-day form without a date counts for every day."""
        m = self.menu
        r, n = unpack_from("<iH", m, 0)
        o = HEAD
        if pk[1] == 255:
            # Unsynced clock: neither the day nor the period is known, so every set of the menu
            # counts (the allergens of all of them, the highest prices): a hard block stays hard.
            a = p = 0
            while o < n:
                _, al, pr, rd, pl, nl = unpack_from(SET, m, o + 10)
                a |= al
                p = max(p, pr)
                r = max(r, rd)
                o += 28 + pl + nl
            return {"allergens": a, "price": fmt(p), "reduced": fmt(r)}
        day = date_of(pk[0]).encode()
        nb = name.encode()
        while o < n:
            i, al, pr, rd, pl, nl = unpack_from(SET, m, o + 10)
            d = m[o:o + 10]
            if (d == day or d == ANY) and m[o + 28:o + 28 + pl] == nb:
                o += 28 + pl
                return {"id": i, "allergens": al, "price": fmt(pr),
                        "dish": m[o:o + nl].decode(), "reduced": fmt(rd)}
            o += 28 + pl + nl
        return {}

    def decide(self, cat, alg, key, t, synced, skip_allergen=False):
        """-> (granted, reason, info dict). Changes nothing; commit() does."""
        pk, name = self.period_at(t, synced)
        if pk is None:
            return False, "no_meal_period", {}
        info = {"meal": name, "cat": cat}
        if self.served.pk == pk and self.served.has(key):
            return False, "already_received", info
        dish = self.dish(pk, name)
        if dish.get("dish"):
            info["dish"] = dish["dish"]
        if dish.get("id"):
            info["did"] = dish["id"]  # the cloud's dish id: the event's "dish"
        if not skip_allergen and alg & dish.get("allergens", 0):
            info["allergens"] = alg & dish["allergens"]
            return False, "allergen", info
        kind = CATS[cat & 3]
        if kind == "free":
            return True, "free", info
        # Reduced pays its share like a paid meal (D13: every family share above 0 is charged):
        # from the balance down to the floor, else on offline credit up to the limit.
        price = money(dish.get(kind if kind == "reduced" else "price", 0))
        info["amount"] = price
        off, bal = self.book.balance(key)
        if bal is not None:
            if bal - price < self.book.floor:
                info["balance"] = bal
                return False, "no_balance", info
            info["balance"] = bal - price
            info["_off"] = off
            return True, kind, info
        used = self.book.credit.get(Served.tag(key), 0) + price
        info["credit"] = used
        if used > self.limit:
            return False, "credit_limit", info
        return True, "reduced" if kind == "reduced" else "offline_credit", info

    def commit(self, key, t, synced, reason, info):
        self.served.period(self.period_at(t, synced)[0])
        self.served.add(key)
        if "_off" in info:
            self.book.pay(info.pop("_off"), info["balance"])
        if info.get("amount") and ("balance" in info or "credit" in info):
            d = self.door  # the event's identity: _event() numbers it next
            self.book.charge(key, d.boot, d.seq + 1, info["amount"], "credit" in info)
