# Network bring-up (docs/board-configs.md "Network"): Wi-Fi station over the networks of
# device.json "wifi" (tried in order), or wired Ethernet from board.json "eth" (LAN8720-class PHY).
# Loaded only by a board that has either. Never blocks the event loop: connect() returns at once
# and isconnected() is polled. All networks failing backs off with jitter (net.link.backoff_ms)
# and starts over; a lost network is joined again the same way. While the network is down the
# MQTT link makes no connect attempt (Link.net) and drops its connection (the socket is dead), and
# the red LED says so: "no network" is a slow blink (1 s on, 1 s off), "no cloud" (network up, no
# broker) one short flash every 2 s ("@led" lines name the pattern). The status key "net" says
# which interface, network, address and RSSI (protocol.md "Status").
from compat import emit, log, sleep_ms, ticks_diff, ticks_ms
from net.link import backoff_ms

try:
    import network
except ImportError:  # the simulator's VM: the stand-in at the same API
    import hal.simnet as network

TICK_MS = 250
CONNECT_MS = 15000  # association + DHCP of one network
RSSI_MS = 30000  # how often the RSSI in the status is refreshed


class Net:
    def __init__(self, app, wifi, eth):
        self.app = app
        self.wifi = wifi  # [{"ssid": .., "key": ..}, ...]
        self.eth = eth  # board.json "eth" or None
        self.up = False
        self.nic = None
        self.show = None  # the LED pattern shown: "no_network", "no_cloud" or None
        self._taps = 0
        self._n = 0  # ticks, for the LED patterns
        self._on = None  # the red LED as the pattern last set it

    def _lan(self):
        e = self.eth
        try:
            from machine import Pin
        except ImportError:
            Pin = None
        kw = {}
        for k in ("mdc", "mdio", "power", "ref_clk"):
            n = e.get(k)
            if n is not None:
                kw[k] = Pin(n) if Pin else n
        if "ref_clk_mode" in e:
            out = e["ref_clk_mode"] == "out"
            kw["ref_clk_mode"] = (Pin.OUT if out else Pin.IN) if Pin else int(out)
        return network.LAN(phy_type=getattr(network, "PHY_" + e.get("phy", "LAN8720")),
                           phy_addr=e.get("phy_addr", 0), **kw)

    async def _tick(self):
        # One TICK_MS step of every wait: beat for the supervisor, drive the LED.
        app = self.app
        sup = getattr(app, "sup", None)
        if sup is not None:
            sup.beat("net")
        self._n += 1
        show = None
        if not self.up:
            show = "no_network"
        elif not app.link.up:
            show = "no_cloud"
        if show != self.show:
            self.show = show
            emit("led", {"show": show})
        door = app.door
        if door.taps != self._taps:  # a tap's green/red is showing: leave the LED to it
            self._taps = door.taps
            self._n = -4
        led = app.board.led
        if show is not None and self._n >= 0 and led.red is not None:
            p = self._n & 7  # a 2 s cycle
            on = p < 4 if show == "no_network" else p == 0
            if on != self._on:
                self._on = on
                led._set(0, 1 if on else 0)
        elif show is None and self._on:
            self._on = False
            led.off()
        await sleep_ms(TICK_MS)

    async def _wait(self, ms):
        while ms > 0:
            await self._tick()
            ms -= TICK_MS

    async def _join(self):
        nic = self.nic
        if self.eth is not None:
            t0 = ticks_ms()
            while ticks_diff(ticks_ms(), t0) < CONNECT_MS:
                if nic.isconnected():
                    return {"if": "eth"}
                await self._tick()
            self.app.sync.error("net", "eth")
            return None
        bad = (network.STAT_IDLE, network.STAT_CONNECTING, network.STAT_GOT_IP)
        for w in self.wifi:
            ssid = w.get("ssid")
            try:
                nic.connect(ssid, w.get("key") or "")
            except OSError as e:
                log("net", ssid, repr(e))
                continue
            t0 = ticks_ms()
            st = 0
            while ticks_diff(ticks_ms(), t0) < CONNECT_MS:
                if nic.isconnected():
                    return {"if": "wlan", "ssid": ssid}
                st = nic.status()
                if st not in bad:
                    break  # no such network, wrong key: the next one
                await self._tick()
            nic.disconnect()
            log("net", ssid, st)
            self.app.sync.error("net", ssid + " " + str(st))
        return None

    def _report(self, info):
        sync = self.app.sync
        if info is not None:
            try:
                info["ip"] = self.nic.ifconfig()[0]
                if info["if"] == "wlan":
                    info["rssi"] = self.nic.status("rssi")
            except (OSError, ValueError):
                pass
        sync.status["net"] = info or {"up": 0}
        if info is not None:  # down: nothing can be published; the reconnect sends it all
            sync.status_changed()
        emit("net", info or {"up": 0})

    async def run(self):
        nic = self.nic = self._lan() if self.eth is not None else network.WLAN(network.STA_IF)
        nic.active(True)
        attempt = 0
        while True:
            info = await self._join()
            if info is None:
                await self._wait(backoff_ms(attempt))
                attempt += 1
                continue
            attempt = 0
            self.up = True
            self._report(info)
            t = ticks_ms()
            while nic.isconnected():
                if ticks_diff(ticks_ms(), t) > RSSI_MS and "rssi" in info:
                    t = ticks_ms()
                    try:
                        info["rssi"] = nic.status("rssi")
                    except OSError:
                        pass
                await self._tick()
            self.up = False
            link = self.app.link
            if link.up:  # its socket died with the network: do not wait for the keepalive
                link.up = False  # (nothing more is published; Link.run calls on_down)
                await link.client.abort()
            self._report(None)
            self.app.sync.error("net", "down")
            if self.eth is None:
                nic.disconnect()


def start(app):
    """The bring-up (run() is its task) of a board with "wifi" (device.json) or "eth"
    (board.json, main.py puts it on the board object); the link waits for it (Link.net)."""
    n = Net(app, app.cfg.get("wifi") or (), getattr(app.board, "eth", None))
    app.link.net = n
    return n
