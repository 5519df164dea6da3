# Canteen counter (docs/protocol.md "Canteen"). Loaded by app.runner only on a canteen board
# (device.json "mode": "canteen" or "reader": "canteen") or at the first canteen tap. A tap shows
# on the display (l1/l2), LED and buzzer what the pupil may receive now, decided offline:
#   free / reduced (price) / paid (from the balance) / offline_credit (balance unknown: within
#   offline_credit_limit) / already_received (this meal period) / allergen (today's dish vs the
#   card's allergen mask) / no_meal_period / no_balance / credit_limit.
# An operator override (sim "override", ESP32 button) within override_s of an allergen block
# grants the meal: a second event, reason "override_allergen", "ref" = the blocked tap's seq.
# State on flash (small): canteen.srv (served tags of the current period), canteen.crd (the
# board's own charges, appended), canteen.bal (pushed balances with their watermark, sorted
# 12-byte records: key 8 + i32 tiyn); balance pushes: app.canteen_bal (D15).
# Money: tiyn (1/100 tenge) inside, "650" / "650.50" strings in config, display and events.
import gc

from compat import (
    asyncio,
    emit,
    hexlify,
    sleep_ms,
    ticks_add,
    ticks_diff,
    ticks_ms,
    unload,
    write_atomic,
)
from store.cardkey import card_key

from app.canteen_core import SRV, Book, Served, _hm, fmt, money
from app.canteen_rules import Decide

MENU = "menu.bin"  # the menu the last command sent, packed (app.canteen_cfg.pack)
# Bytes a packed menu may take: 8 days of 2 sets whose names have 16 Cyrillic letters take
# ~1.1 KB; a bigger menu is refused ("too_big"). device.json "menu_bytes" sets another size.
MENU_MAX = 1536

DEBOUNCE_MS = 1500
TEXT = {"free": "Free meal", "reduced": "Reduced price", "paid": "Paid from balance",
        "offline_credit": "On credit", "already_received": "Already received",
        "allergen": "BLOCKED: allergen", "no_meal_period": "No meal now",
        "no_balance": "Balance too low", "credit_limit": "Credit limit",
        "override_allergen": "OVERRIDE allergen", "unknown_card": "Unknown card"}


class Canteen(Decide):
    def __init__(self, door, cfg, dirpath=".", sync=None):
        self.door = door
        self.board = door.board
        self.d = dirpath + "/"
        self.seq_blocked = None  # (key, cat, deadline ms, ref seq) of the last allergen block
        self.served = Served(cfg.get("canteen_slots", 1024), self.d + SRV)
        self.book = Book(self.d)
        self._last = None
        self._lt = 0
        self.ev = None  # asyncio.Event of the LED/buzzer task, made with it (show)
        self.pat = 0
        self.bu = None  # app.canteen_bal.Assembler while a balance push arrives
        self.sync = sync  # net.sync.Sync on a board: subscribe to balance pushes, report them
        if sync is not None:
            self.t_bal = sync.t_status[:-6] + "bal"
            sync.subs.append(self.t_bal)
            sync.status["bal"] = self.book.ver
        # The menu, packed (app.canteen_cfg.pack), and the buffer the next one is packed into.
        self.menu = bytearray(cfg.get("menu_bytes", MENU_MAX))
        self._spare = bytearray(len(self.menu))
        self.configure(cfg, None)

    def configure(self, cfg, save=False):
        """Apply canteen keys of device.json (save None: at start) / a `config` command (net.cmd;
        save True: the menu goes to menu.bin). A menu is packed (app.canteen_cfg.pack) and taken
        out of `cfg`: its JSON tree is not kept, and device.json does not hold it again (D28-I)."""
        if "meal_periods" in cfg:
            ps = cfg["meal_periods"] or {}
            self.periods = sorted((_hm(v[0]), _hm(v[1]), k) for k, v in ps.items())
        elif not hasattr(self, "periods"):
            self.periods = [(480, 600, "breakfast"), (720, 870, "lunch")]
        mn = cfg.pop("menu", None)
        if mn is not None:
            from app.canteen_cfg import pack
            sp = self._spare
            if not pack(mn, sp):
                mn = None
                if save:
                    raise ValueError("too_big")  # the command's answer; the old menu stays
                print("#", "canteen", "menu", "too_big")
            else:
                self.menu, self._spare = sp, self.menu
                if save:
                    write_atomic(self.d + MENU, memoryview(sp)[:sp[4] | sp[5] << 8])
                    cfg["menu"] = None  # device.json's own menu (the flasher's) is older
            mn = None
        elif save is None:
            try:  # at start, device.json without a menu: the newest a command sent
                m = self.menu
                with open(self.d + MENU, "rb") as f:
                    if f.readinto(m) < (m[4] | m[5] << 8):  # bigger than menu_bytes now
                        m[4] = m[5] = 0  # no menu rather than half of one
            except OSError:
                pass
        if "offline_credit_limit" in cfg or not hasattr(self, "limit"):
            self.limit = money(cfg.get("offline_credit_limit", 0))
        self.override_ms = cfg.get("override_s", getattr(self, "override_ms", 30000) // 1000) * 1000
        self.tz = cfg.get("tz_offset_min", getattr(self, "tz", 0))
        bal = cfg.get("balances")
        if bal is not None:
            self.book.write(bal, self.door.boot, self.door.seq)
            cfg.pop("balances", None)  # kept on flash (canteen.bal), not in RAM

    # --- balance pushes (protocol.md "Canteen balances", D15) ---------------------------------
    def bal_chunk(self, payload):
        s = self.sync
        try:
            if self.bu is None:
                from app.canteen_bal import Assembler
                self.bu = Assembler(self.d)
            if not self.bu.feed(payload):
                return
            k = self.bu.key
            gc.collect()  # a push is rare; its code needs a few KB in one piece
            from app.canteen_bal import install
            install(self.book, (k[1], k[2], k[3], k[4]))
            s.status["bal"] = k[1]
            s.status.pop("bal_err", None)
            emit("bal", {"installed": k[1], "n": k[5], "wm": k[3]})
        except Exception as e:  # BalError, flash or heap trouble: the old balances stay
            r = e.args[0] if e.args and isinstance(e.args[0], str) else type(e).__name__
            if self.bu is not None:
                self.bu.abort()
            s.status["bal_err"] = r
            s.error("bal", r)
            emit("bal", {"rejected": r})
        self.bu = None
        unload("app.canteen_bal")  # loaded only for a push
        s.status_changed()

    # --- a tap at the counter -------------------------------------------------------------------
    def tap(self, uid, key=None, method=None, why=None):
        # `key`, `method`, `why`: a person identified by a QR code or PIN (app.altid via
        # decide; D29-J), the alt-id check's refusal in `why`
        door = self.door
        now = ticks_ms()
        if key is None:
            key = card_key(door.site_key, uid)
            if key == self._last and ticks_diff(now, self._lt) < DEBOUNCE_MS:
                self._lt = now
                emit("ignored", {"why": "debounce"})
                return None
            self._last, self._lt = key, now
        clk = door.clock
        t, synced = clk.now(), clk.synced
        wl = door.wl
        info = None
        if why is not None:
            granted, reason = False, why
        elif wl is None:
            granted, reason = False, door.wl_reason
        elif not wl.lookup(key) or (method is None and wl.attrs() & 0xC0):
            granted, reason = False, "unknown_card"  # (bits 6-7: a person's or PIN's record)
        else:
            cat, alg = (wl.attrs() >> 2) & 3, wl.allergens()
            granted, reason, info = self.decide(cat, alg, key, t, synced)
            if granted:
                self.commit(key, t, synced, reason, info)
        seq = self._event(key, granted, reason, info, t, synced, method)
        if reason == "allergen":
            self.seq_blocked = (key, info["cat"], ticks_add(now, self.override_ms), seq)
        # After the tap is shown: free its garbage now, so what lives on is allocated low in
        # the heap, not scattered over it (a heap in small pieces cannot load a command).
        gc.collect()
        return "granted" if granted else "denied"

    def by_key(self, key, reader, method=None, why=None):
        # app.altid's entry (as Door.decide): the counter's decision for a person key
        return self.tap(None, key, method, why)

    def override(self):
        """The operator's button after an allergen block: grant it (second event)."""
        b = self.seq_blocked
        self.seq_blocked = None
        if b is None or ticks_diff(b[2], ticks_ms()) < 0:
            emit("override", {"ok": False})
            self.show("No block to", "override", False)
            return None
        key, cat, _, ref = b
        clk = self.door.clock
        t, synced = clk.now(), clk.synced
        granted, reason, info = self.decide(cat, 0, key, t, synced, True)
        if granted:
            info["paid_as"] = reason
            reason = "override_allergen"
            self.commit(key, t, synced, reason, info)
        info["ref"] = ref
        emit("override", {"ok": granted, "ref": ref})
        self._event(key, granted, reason, info, t, synced)
        return granted

    def _event(self, key, granted, reason, info, t, synced, method=None):
        door = self.door
        clk = door.clock
        result = "granted" if granted else "denied"
        self.show_result(granted, reason, info)
        door.seq += 1
        door.taps += 1
        up = clk.up_ms()
        if info is None and method is None:
            door.append(door.journal.append_tap, (door.boot, door.seq, t, synced, up, "canteen",
                                                  key, result, reason))
            ex = ""
        else:
            ex = ""
            for k in ("meal", "cat", "amount", "balance", "credit", "allergens", "ref",
                      "paid_as", "did"):
                if info is not None and k in info:
                    v = info[k]
                    if k in ("amount", "balance", "credit"):
                        v = '"%s"' % fmt(v)
                    elif k in ("meal", "paid_as"):
                        v = '"%s"' % v
                    ex += ',"%s":%s' % ("dish" if k == "did" else k, v)
            if method is not None:
                ex += ',"method":"%s"' % method
            data = ('{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"tap","reader":'
                    '"canteen","card":"%s","result":"%s","reason":"%s"%s}'
                    % (door.boot, door.seq, t, 1 if synced else 0, up, hexlify(key), result,
                       reason, ex))
            door.append(door.journal.append, (door.boot, door.seq, data, t, synced, up, 2))
        ev = {"boot": door.boot, "seq": door.seq, "card": hexlify(key), "reader": "canteen",
              "result": result, "reason": reason}
        if method is not None:
            ev["method"] = method
        if info:
            for k in ("meal", "amount", "balance", "credit", "ref"):
                if k in info:
                    ev[k] = fmt(info[k]) if k in ("amount", "balance", "credit") else info[k]
        emit("tap", ev)
        if door.on_event:
            door.on_event()
        return door.seq

    # --- counter outputs ------------------------------------------------------------------------
    def show_result(self, granted, reason, info):
        info = info or {}
        l1 = TEXT.get(reason, reason)
        if reason in ("reduced", "paid", "offline_credit") or info.get("paid_as"):
            l1 += " " + fmt(info.get("amount", 0)) if "amount" in info else ""
        if "balance" in info:
            l2 = "Balance " + fmt(info["balance"])
        elif "credit" in info:
            l2 = "Credit " + fmt(info["credit"]) + "/" + fmt(self.limit)
        elif reason == "allergen":
            l2 = "%s: 0x%04x" % (info.get("dish", "dish"), info.get("allergens", 0))
        else:
            l2 = info.get("dish", info.get("meal", ""))
        self.show(l1, l2, granted)

    def show(self, l1, l2, granted):
        d = getattr(self.board, "display", None)
        if d is not None:
            d.show(l1, l2)
        else:
            emit("display", {"l1": l1, "l2": l2})  # sim / a board without a display: the log
        led = self.board.led
        if granted:
            led.ok()
        else:
            led.deny()
        self.pat = 1 if granted else 2
        if self.ev is None:
            co = self._signal()
            try:
                asyncio.create_task(co)
            except RuntimeError:  # CPython unit cases without an event loop: no patterns
                co.close()
                return
            self.ev = asyncio.Event()
        self.ev.set()

    async def _signal(self):
        # One long-lived task: buzzer pattern, then the LED goes off after 1.5 s.
        bz = getattr(self.board, "buzzer", None)
        while True:
            await self.ev.wait()
            self.ev.clear()
            if bz:
                await bz.play(bz.OK if self.pat == 1 else bz.DENY)
            await sleep_ms(1500)
            if not self.ev.is_set():
                self.board.led.off()
