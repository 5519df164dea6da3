# The canteen's decision table (app.canteen; protocol.md "Canteen"): meal period, served this
# period, today's dish vs the card's allergens, meal category, balance or offline credit. A mixin
# of app.canteen.Canteen, its own module so each compiles in a small heap.
from app.canteen_core import CATS, Served, date_of, fmt, money


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
        "Canteen") is {"reduced": R, "days": {date: {period: [id, allergens, price, name]}}},
        today and the next days, so an offline board keeps blocking on the days after; a set as
        a list, not a dict: half the heap (D27-A). The one-day form {"date", "periods":
        {period: {...}}} (no date: every day) is read as one such day."""
        mn = self.menu
        day = date_of(pk[0])
        ds = mn.get("days")
        if ds is None:
            ds = {mn.get("date") or day: mn.get("periods") or {}}
        if pk[1] == 255:
            # Unsynced clock: neither the day nor the period is known, so every set of the menu
            # counts (the allergens of all of them, the highest prices): a hard block stays hard.
            u = {"allergens": 0, "price": 0, "reduced": money(mn.get("reduced", 0))}
            for ps in ds.values():
                for p in ps.values():
                    if isinstance(p, list):
                        p = {"allergens": p[1], "price": p[2]}
                    u["allergens"] |= p.get("allergens", 0)
                    for k in ("price", "reduced"):
                        u[k] = max(u[k], money(p.get(k, 0)) if k in p else 0)
            u["price"], u["reduced"] = fmt(u["price"]), fmt(u["reduced"])
            return u
        s = (ds.get(day) or {}).get(name) or {}
        if isinstance(s, list):  # [id, allergens, price, name]: one small dict per tap
            s = {"id": s[0], "allergens": s[1], "price": s[2], "dish": s[3],
                 "reduced": mn.get("reduced", 0)}
        return s

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
