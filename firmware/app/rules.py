# Access rules of a door/turnstile beyond "the card is listed": schedules per access profile
# (staff vs student) and anti-passback. Loaded only when device.json configures `profiles` or
# `antipassback` (app.supervisor). No allocation per tap: the anti-passback table is one
# bytearray allocated at start-up. One class, not one per rule: every class and function costs
# heap even when its code runs from flash (64 KiB boards, docs/decisions.md D16).
STUDENT = 1
STAFF = 2
WAYS = 4  # anti-passback: slots per set
# Anti-passback slots (2 bytes each) when device.json has no `antipassback_slots`: 2048 (4 KiB)
# on a board with an ESP32's ~100 KiB heap (>= 32 KiB still free when the rules are built:
# ~50 KiB there), 512 (1 KiB) on a smaller one (issue #3's 64 KiB: ~18 KiB free), where the
# 3 KiB are the difference between running and not. Fewer slots remember fewer cards:
# with more cards inside than slots (and sets fill unevenly), the least recently seen lose
# their state and pass as "unknown" (never locked out). A site with more than ~400 cardholders
# through one turnstile should set `antipassback_slots` and give the heap for it.
# One name a line: `A, B, C = 1, 2, 3` would be a tuple object in the heap for good (D16).
SLOTS = 2048
SMALL_SLOTS = 512
SMALL_FREE = 32 * 1024


def local_time(t, tz_min):
    """Unix seconds -> (ISO weekday 1=Mon..7=Sun, minute of the day) at UTC + tz_min."""
    t += tz_min * 60
    d = t // 86400
    return (d + 3) % 7 + 1, (t // 60) % 1440  # 1970-01-01 was a Thursday


class Rules:
    """The decision for a listed card.

    Schedules, device.json `profiles`: {"1": {"days": "12345", "from": "07:00", "to": "18:00",
    "staff": "always"|"window"|"never"}}. Profile 0 (or a card without profile): every reader at
    every time. Students get in only inside their profile's window; staff at any time unless the
    profile says "staff": "window" (same window as students) or "never". An access profile the
    board does not know lets staff in and keeps students out. Exits are never restricted (nobody
    is locked inside a school).

    Anti-passback, device.json `antipassback`: inside/outside per card key in a fixed RAM table,
    4-way set-associative, LRU inside a set, 2 bytes per slot (a 15-bit tag from key bytes 2-3,
    bit 0 = inside; 0 = empty slot). The set comes from key bytes 0-1 (card keys are SHA-256
    output: uniform). A card evicted or never seen is "unknown" and passes. The table is cleared
    when the local day changes, so a card that left without tapping out (tailgating) is not
    locked out the next morning."""

    def __init__(self, cfg):
        self.tz = cfg.get("tz_offset_min", 0)
        self.p = None  # profile -> (day bits, from minute, to minute, staff 0/1/2)
        profiles = cfg.get("profiles")
        if profiles:
            self.p = {}
            for k, v in profiles.items():
                days = 0
                for c in v.get("days", "1234567"):
                    days |= 1 << int(c)
                hm = []
                for s in (v.get("from", "00:00"), v.get("to", "24:00")):
                    h, m = s.split(":")
                    hm.append(int(h) * 60 + int(m))
                s = v.get("staff")  # no tuple of the names: constants in the heap (D16)
                staff = 1 if s == "window" else (2 if s == "never" else 0)
                if s is not None and not staff and s != "always":
                    raise ValueError(s)
                self.p[int(k)] = (days, hm[0], hm[1], staff)
        self.t = None  # the anti-passback table
        if cfg.get("antipassback"):
            slots = cfg.get("antipassback_slots")
            if not slots:
                # By the heap still free here (before the App is built), not the heap's size:
                # the simulator's heap also holds the ROMFS image (a board's is in flash), so a
                # 64 KiB sim board counted as >= 96 KiB and got the large table.
                import gc
                try:
                    free = gc.mem_free()
                except AttributeError:  # CPython
                    free = SMALL_FREE
                slots = SLOTS if free >= SMALL_FREE else SMALL_SLOTS
            self.sets = max(slots // WAYS, 1)
            self.t = bytearray(self.sets * WAYS * 2)
            self.day = -1

    def allowed(self, profile, kind, t):
        """The schedule lets a card of `kind` (STUDENT/STAFF) and `profile` in at time t."""
        if not profile:
            return True
        p = self.p.get(profile)
        if p is None:
            return kind == STAFF
        if kind == STAFF:
            if p[3] == 0:
                return True
            if p[3] == 2:
                return False
        wd, m = local_time(t, self.tz)
        return bool(p[0] & (1 << wd)) and p[1] <= m < p[2]

    def check(self, kind, profile, key, reader, t, synced, online):
        """(granted, reason). `t` board time; `synced` whether it can be trusted; `online`
        whether the board reaches the cloud (hard anti-passback) or not (soft). The pairs are
        built per call: a tuple of constants would be an object in the heap for good (D16)."""
        ok = True
        reason = "ok"
        if reader != "in":
            return ok, reason
        # Without a synced clock the window cannot be checked: the schedule is not enforced.
        if self.p is not None and synced and not self.allowed(profile, kind, t):
            ok = False
            return ok, "schedule"
        tb = self.t
        if tb is not None:
            day = (t + self.tz * 60) // 86400
            if day != self.day:
                if self.day >= 0:
                    for i in range(len(tb)):
                        tb[i] = 0
                self.day = day
            if self.get(key) == 1:
                if online:
                    ok = False
                    reason = "antipassback"
                else:
                    reason = "antipassback_soft"
        return ok, reason

    def passed(self, key, reader):
        """A granted card went through (passage sensor, or the grant when there is none)."""
        if self.t is not None and (reader == "in" or reader == "out"):
            self.set(key, reader == "in")

    def _locate(self, key):
        tag = ((key[2] << 8 | key[3]) << 1) & 0xFFFE or 2
        base = ((key[0] << 8 | key[1]) % self.sets) * WAYS * 2
        t = self.t
        for i in range(WAYS):
            o = base + 2 * i
            if (t[o] << 8 | t[o + 1]) & 0xFFFE == tag:
                return base, i, tag
        return base, -1, tag

    def get(self, key):
        """Anti-passback state: 1 inside, 0 outside, -1 unknown."""
        base, i, _ = self._locate(key)
        if i < 0:
            return -1
        return self.t[base + 2 * i + 1] & 1

    def set(self, key, inside):
        base, i, tag = self._locate(key)
        t = self.t
        if i < 0:
            i = WAYS - 1  # the least recently used slot of the set goes
        # Move slots 0..i-1 down one, the card goes to the front (most recently used).
        for j in range(base + 2 * i + 1, base + 1, -1):
            t[j] = t[j - 2]
        v = tag | (1 if inside else 0)
        t[base] = v >> 8
        t[base + 1] = v & 0xFF
