# Wires the board together: HAL adapter + whitelist + journal + door + MQTT link + sync.
import binascii

from app.door import Door
from compat import asyncio, emit, mem_free
from net.clock import Clock
from net.link import Link
from net.sync import Sync
from store.whitelist import open_whitelist


class App:
    def __init__(self, board, cfg, boot, journal):
        self.board = board
        self.cfg = cfg
        self.boot = boot
        self.journal = journal
        dev = cfg["device"]
        mcfg = cfg.get("mqtt") or {}
        self.wl, wl_reason = open_whitelist("whitelist.bin")
        self.wl_version = self.wl.version if self.wl else 0
        # Batch buffer: 16 KiB (protocol maximum) when the heap allows. In the 64 KiB sim the code
        # leaves ~16 KiB free here and the rest of start-up, the running tasks and a burst of taps
        # need ~15 KiB, so it gets ~1 KiB (about 5 events per batch; the protocol allows 1..32).
        bb = cfg.get("batch_bytes") or max(768, mem_free() - 15360)
        self.sync = Sync(journal, dev, mcfg.get("prefix", "qadam"), cfg.get("batch", 32),
                         cfg.get("ack_timeout_ms", 3000),
                         status={"boot": boot, "wl": self.wl_version}, batch_bytes=bb)
        self.link = Link(dev, mcfg, will=self.sync.will(), on_message=self.sync.on_message,
                         on_up=self.sync.on_up, on_down=self.sync.on_down)
        self.sync.link = self.link
        self.door = Door(board, self.wl, wl_reason, journal,
                         Clock(cfg.get("clock_synced", False)),
                         binascii.unhexlify(cfg["site_key"]), boot,
                         cfg.get("relay_ms", 300), cfg.get("reader", "in"), self.sync.wake)
        self._done = asyncio.Event()

    # --- commands from the HAL (the sim's stdin, a real reader) -------------------------------
    def tap(self, uid, reader=None):
        return self.door.tap(uid, reader)

    def stat(self):
        emit("stat", {"journal": self.journal.count, "taps": self.door.taps,
                      "acked": self.sync.acked, "mqtt": self.link.up, "heap": mem_free()})

    def quit(self):
        self._done.set()

    async def run(self):
        emit("ready", {"dev": self.cfg["device"], "boot": self.boot, "wl": self.wl_version,
                       "journal": self.journal.count})
        tasks = [asyncio.create_task(self.sync.run()), asyncio.create_task(self.link.run())]
        tasks += self.board.start(self) or []
        await self._done.wait()
        for t in tasks:
            t.cancel()
        # No DISCONNECT: like a power cut, so the broker publishes the offline will.
        self.link.on_down = None
        await self.link.client.abort()
        emit("bye", {})
