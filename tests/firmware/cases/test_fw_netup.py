# net/netup.py over hal/simnet.py (the VM's stand-in for MicroPython's `network` module) and the
# NTP offset of net/clock.py. Runs under CPython (pytest) and in the MicroPython VM (mp_runner).
import time

import hal.simnet as sn
from compat import asyncio, sleep_ms
from net.clock import Clock


def _air(**kw):
    sn.AIR.update(
        {"aps": {"school": ["pw", -58]}, "cable": 1, "dhcp": 1, "assoc_ms": 0, "dhcp_ms": 0}
    )
    sn.AIR.update(kw)


def test_clock_reports_the_ntp_offset():
    c = Clock(False)
    c.set()  # synced by other means (the sim's host clock): no NTP figures
    assert "off" not in c.status()
    now = int(time.time())
    c.set(now + 100)
    st = c.status()
    assert 99 <= st["off"] <= 101 and st["ntp"] == 0 and st["synced"] == 1
    c.set(now + 100)  # the next answer: the clock was (about) right
    assert -1 <= c.status()["off"] <= 1
    assert abs(c.now() - (int(time.time()) + 100)) <= 1


def test_wlan_models_association_keys_dhcp_and_loss():
    _air()
    w = sn.WLAN(sn.STA_IF)
    try:
        w.connect("school", "pw")
        raise AssertionError("connect before active() must fail")
    except OSError:
        pass
    w.active(True)
    assert w.status() == sn.STAT_IDLE and not w.isconnected()
    w.connect("absent", "x")
    assert w.status() == sn.STAT_NO_AP_FOUND and not w.isconnected()
    w.connect("school", "wrong")
    assert w.status() == sn.STAT_WRONG_PASSWORD
    w.connect("school", "pw")
    assert w.isconnected() and w.status() == sn.STAT_GOT_IP and w.status("rssi") == -58
    assert w.ifconfig()[0] == "10.9.0.23"
    assert [a[0] for a in w.scan()] == [b"school"]
    sn.command(["net", "noap", "school"])  # the access point goes away
    assert not w.isconnected() and w.status() == sn.STAT_BEACON_TIMEOUT
    try:
        w.status("rssi")
        raise AssertionError("no RSSI without a connection")
    except OSError:
        pass
    sn.command(["net", "ap", "school", "pw", "-70"])
    assert not w.isconnected()  # a lost connection stays lost until connect() again
    w.connect("school", "pw")
    assert w.isconnected() and w.status("rssi") == -70
    sn.command(["net", "dhcp", "0"])
    w.connect("school", "pw")  # associated, but no DHCP server answers
    assert not w.isconnected() and w.status() == sn.STAT_CONNECTING


def test_wlan_dhcp_delay():
    _air(dhcp_ms=150)
    w = sn.WLAN(sn.STA_IF)
    w.active(True)
    w.connect("school", "pw")
    assert not w.isconnected() and w.status() == sn.STAT_CONNECTING
    time.sleep(0.2)
    assert w.isconnected()


def test_lan_cable():
    _air(cable=0)
    try:
        sn.LAN(phy_type=sn.PHY_LAN8720)
        raise AssertionError("mdc and mdio are required")
    except ValueError:
        pass
    lan = sn.LAN(mdc=23, mdio=18, power=16, phy_type=sn.PHY_LAN8720, phy_addr=1)
    assert lan.status() == sn.ETH_STOPPED
    lan.active(True)
    assert not lan.isconnected() and lan.status() == sn.ETH_DISCONNECTED
    sn.command(["net", "cable", "1"])
    assert lan.isconnected() and lan.status() == sn.ETH_GOT_IP


class _Pin:
    def __init__(self):
        self.v = 0

    def value(self, v=None):
        if v is not None:
            self.v = v
        return self.v


class _Led:
    def __init__(self):
        self.green = _Pin()
        self.red = _Pin()
        self.reds = 0  # how often the red LED was switched on

    def _set(self, g, r):
        self.green.v = g
        if r and not self.red.v:
            self.reds += 1
        self.red.v = r

    def off(self):
        self._set(0, 0)


class _Obj:
    pass


def _app(wifi):
    app = _Obj()
    app.cfg = {"wifi": wifi}
    app.board = _Obj()
    app.board.led = _Led()
    app.door = _Obj()
    app.door.taps = 0
    app.sync = _Obj()
    app.sync.status = {}
    app.sync.errs = []
    app.sync.status_changed = lambda: None
    app.sync.error = lambda tag, why: app.sync.errs.append((tag, why))
    app.link = _Obj()
    app.link.up = False
    app.link.net = None
    return app


def test_netup_tries_the_networks_in_order_and_reports():
    import net.netup

    _air()
    app = _app([{"ssid": "absent", "key": "x"}, {"ssid": "school", "key": "pw"}])
    nw = net.netup.start(app)
    assert app.link.net is nw and not nw.up

    async def go():
        t = asyncio.create_task(nw.run())
        for _ in range(100):
            if nw.up:
                break
            await sleep_ms(20)
        up = nw.up
        sn.command(["net", "noap", "school"])  # lost: down again, the LED blinks
        for _ in range(100):
            if not nw.up and app.board.led.reds:
                break
            await sleep_ms(20)
        t.cancel()
        return up

    assert asyncio.run(go())
    assert app.sync.errs[0] == ("net", "absent 201")
    assert ("net", "down") in app.sync.errs
    assert not nw.up and app.sync.status["net"] == {"up": 0}
    assert nw.show == "no_network" and app.board.led.reds >= 1
