# Wires the board together: HAL adapter + whitelist + journal + door + MQTT link + sync, and the
# network features: whitelist updates, commands, heartbeat, clock (protocol.md).
import binascii

from app.door import Door
from compat import asyncio, emit, mem_free, unload
from net.clock import Clock
from net.link import Link
from net.mqtt import RXBUF
from net.sync import Sync, topic

BATCH_BYTES = 4096  # payload bytes of a batch: 32 tap events of ~125 bytes
# A canteen's MQTT receive buffer: its menu command (8 days, 2 sets a day, names of 16 Cyrillic
# letters: 1.8 KB) lands in it, no block of that size needed later (D28-I).
CANTEEN_RX = 2048


class App:
    def __init__(self, board, cfg, boot, journal):
        self.board = board
        self.cfg = cfg
        self.boot = boot
        self.journal = journal
        dev = cfg["device"]
        mcfg = cfg.get("mqtt") or {}
        prefix = mcfg.get("prefix", "qadam")
        # An update a reset interrupted is never trusted; store.wlupdate is loaded for that and
        # dropped again (it comes back only while an update arrives).
        import store.wlupdate as wlu
        wlu.cleanup(".")
        live = wlu.LIVE
        unload(wlu)
        import store.wlcheck as wlc  # open_whitelist: boot only, so it goes again too
        self.wl, wl_reason = wlc.open_whitelist(live)
        unload(wlc)
        self.wl_version = self.wl.version if self.wl else 0
        if cfg.get("altid"):
            # QR scanner and keypad (D29-J): their modules and tables are made now, while the
            # heap is in one piece; loaded at the first code they failed in a cut-up 64 KiB heap
            import app.altid
            app.altid.setup(self)
        self.clock = Clock(cfg.get("clock_synced", False))
        self.sync = Sync(journal, dev, prefix, cfg.get("batch", 32),
                         cfg.get("ack_timeout_ms", 3000),
                         status={"boot": boot, "wl": self.wl_version},
                         batch_bytes=cfg.get("batch_bytes") or BATCH_BYTES,
                         heartbeat_s=cfg.get("heartbeat_s", 60), clock=self.clock,
                         key=binascii.unhexlify(cfg.pop("ack_key", None) or ""))
        self.clock.on_sync = self.sync.status_changed
        self.t_wl = topic(prefix, dev, "wl")
        self.t_cmd = topic(prefix, dev, "cmd")
        self.sync.subs += [self.t_wl, self.t_cmd]
        try:  # a board flashed with the OTA layout (docs/ota.md): it runs from a slot, a file
            import os  # or a ROMFS partition (D27-H: the flash tool wrote ota.json)
            try:
                os.stat("slot_a.rom")
            except OSError:
                os.stat("ota.json")
            import ota.trial
            ota.trial.setup(self)  # its slot into the status; OTA topic subscribed
        except OSError:
            pass
        # The last will: offline, retained, on the status topic (protocol.md "Status"). Built
        # here, not by a Sync method: a method costs heap for as long as the board runs (D20).
        canteen = cfg.get("mode") == "canteen" or cfg.get("reader") == "canteen"
        self.link = Link(dev, mcfg, will=(self.sync.t_status, b'{"v":1,"online":false}', True, 1),
                         on_message=self.on_message, on_up=self.sync.on_up,
                         on_down=self.sync.on_down, rx=CANTEEN_RX if canteen else RXBUF)
        self.sync.link = self.link
        self.link.sync = self.sync  # failed connects go to the board's last errors
        self.door = Door(board, self.wl, wl_reason, journal, self.clock,
                         binascii.unhexlify(cfg["site_key"]), boot,
                         cfg.get("relay_ms", 300), cfg.get("reader", "in"), self.sync.wake)
        self._done = asyncio.Event()
        self._wlu = None  # whitelist update in progress (store.wlupdate.Update)
        self._wl_busy = False
        self._last_cmd = None  # (id, reply) of the last command: a re-delivery is not re-run
        self.rebooting = False
        self.canteen = None  # app.canteen.Canteen, only on a canteen board (loaded lazily)
        if canteen:
            self._canteen()
        # Network bring-up and NTP run for good where configured (started in run()): loaded
        # after the MQTT client's 1,152-byte buffer, which needs a block in one piece.
        if cfg.get("wifi") or getattr(board, "eth", None) is not None:
            import net.netup  # noqa: F401
        if cfg.get("ntp"):
            import net.ntp  # noqa: F401

    # --- MQTT ---------------------------------------------------------------------------------
    def on_message(self, t, payload):
        if t == self.sync.t_ack:
            self.sync.on_message(t, payload)
        elif t == self.t_wl:
            self._wl_chunk(payload)
        elif t == self.t_cmd:
            # Parsed now, from the receive buffer's view: no copy of a menu's 2 KB (D28-I).
            import net.cmd
            asyncio.create_task(self._cmd([net.cmd.read(payload, self.link.client.cut)]))
        elif t.endswith("/ota"):  # subscribed by ota.trial.setup, on OTA boards only
            import ota.fetch  # loaded while a download is under way (ota.fetch unloads it)
            ota.fetch.on_message(self, payload)
        elif self.canteen is not None and t == self.canteen.t_bal:
            self.canteen.bal_chunk(payload)

    # --- whitelist updates (protocol.md "Whitelist updates") ----------------------------------
    def _wl_chunk(self, payload):
        # The handling lives in store.wlupdate, loaded while an update is in progress: its
        # functions and messages are not in the heap the rest of the time (D16).
        import store.wlupdate
        store.wlupdate.chunk(self, payload)

    # --- commands (protocol.md "Commands"; executed by net/cmd.py, loaded per command) -------
    async def _cmd(self, box):
        import net.cmd
        try:
            await net.cmd.handle(self, box)
        finally:
            unload("net.cmd")

    def _reboot(self):
        self.rebooting = True
        self.quit()

    # --- commands from the HAL (the sim's stdin, a real reader) -------------------------------
    def tap(self, uid, reader=None):
        if (reader or self.door.reader) == "canteen":
            return self._canteen().tap(uid)
        return self.door.tap(uid, reader)

    def _canteen(self):
        if self.canteen is None:
            from app.canteen import Canteen
            self.canteen = Canteen(self.door, self.cfg, sync=self.sync)
            self.door.counter = self.canteen  # where app.altid sends a canteen's codes (D29-J)
            # A canteen gets commands (the menu) and balance pushes every day. Loading their
            # modules interns their names, which grows the qstr pool by one big block: do it
            # now, while the heap is in one piece, not after taps have cut it up (D15).
            import app.canteen_bal  # noqa: F401
            import app.canteen_cfg  # noqa: F401
            import net.cmd  # noqa: F401
            unload(net.cmd, app.canteen_bal)
        return self.canteen

    def override(self):
        # The canteen operator's button (sim "override"): grant the last allergen block.
        return self.canteen.override() if self.canteen else None

    def stat(self):
        s = {"journal": self.journal.count, "taps": self.door.taps, "acked": self.sync.acked,
             "mqtt": self.link.up, "heap": mem_free(), "wl": self.wl_version,
             "bb": self.sync.bb, "dups": self.link.client.dups, "sync": self.clock.synced}
        if hasattr(self, "sup"):
            s.update(self.sup.info())
        emit("stat", s)

    def quit(self):
        self._done.set()

    async def _sync_clock_later(self, ms):
        from compat import sleep_ms
        await sleep_ms(ms)
        self.clock.set()

    async def run(self):
        # The supervisor watches the network and journal loops too (their beats, "net" and
        # "journal"); without one (unit tests) they run unwatched.
        self.sync.sup = self.link.sup = getattr(self, "sup", None)
        emit("ready", {"dev": self.cfg["device"], "boot": self.boot, "wl": self.wl_version,
                       "journal": self.journal.count})
        tasks = [asyncio.create_task(self.sync.run()), asyncio.create_task(self.link.run())]
        nw = None
        import sys
        m = sys.modules.get("net.netup")
        if m is not None:  # Wi-Fi / Ethernet (net/netup.py); the link waits for it (Link.net)
            nw = m.start(self)
            tasks.append(asyncio.create_task(nw.run()))
        m = sys.modules.get("net.ntp")
        if m is not None:
            tasks.append(asyncio.create_task(m.run(self.clock, self.cfg["ntp"], nw)))
        elif not self.clock.synced and self.cfg.get("clock_sync_ms"):
            # Sim only: the host clock "becomes synced" after a while (tests of the correction).
            tasks.append(asyncio.create_task(self._sync_clock_later(self.cfg["clock_sync_ms"])))
        m = sys.modules.get("ota.trial")
        if m is not None:  # a new image on trial: confirm it or give it up (ota/trial.py)
            tasks.append(asyncio.create_task(m.watch(self)))
        tasks += self.board.start(self) or []
        await self._done.wait()
        for t in tasks:
            t.cancel()
        # No DISCONNECT: like a power cut, so the broker publishes the offline will.
        self.link.on_down = None
        await self.link.client.abort()
        emit("bye", {})
        if self.rebooting:
            emit("reboot", {})
            if self.board.name == "sim":
                import sys
                sys.exit(75)  # the simulator sees the exit code; power it on again to "reboot"
            import machine
            machine.reset()
