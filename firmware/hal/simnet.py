# Simulator stand-in for MicroPython's `network` module (the unix-port VM has none), at the level
# of the real API: WLAN(STA_IF) / LAN(...) with active(), connect(ssid, key), disconnect(),
# isconnected(), status([param]), ifconfig(), scan(). net/netup.py imports it only where
# `import network` fails, so the code above it is the real board's. Constants: the esp32 port's.
# The simulated air (board.json "sim_net", changed at run time by the sim's stdin "net ..."):
#   "aps": {"ssid": ["key", rssi]}  the access points that exist (a wrong key: STAT_WRONG_PASSWORD)
#   "cable": 1                      the Ethernet cable is plugged in
#   "dhcp": 1                       a DHCP server answers (0: association works, no IP ever)
#   "assoc_ms", "dhcp_ms"           how long association and DHCP take
# stdin: "net ap <ssid> <key> [rssi]", "net noap <ssid>", "net cable 0|1", "net dhcp 0|1".
# An AP that goes away (or the cable) drops the connection: isconnected() False, status()
# STAT_BEACON_TIMEOUT (ETH_DISCONNECTED); like the real driver configured with no reconnects, it
# stays down until connect() is called again.
from compat import log, ticks_diff, ticks_ms

STA_IF = 0
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
PHY_LAN8720 = 0
ETH_STOPPED = 2
ETH_CONNECTED = 3
ETH_DISCONNECTED = 4
ETH_GOT_IP = 5

AIR = {"aps": {}, "cable": 1, "dhcp": 1, "assoc_ms": 200, "dhcp_ms": 300}
try:
    import json
    with open("board.json") as _f:
        AIR.update(json.load(_f).get("sim_net") or {})
except (OSError, ValueError):
    pass
_NOIP = ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")


def command(parts):
    n = len(parts)
    w = parts[1] if n > 1 else ""
    if w == "ap" and n >= 4:
        AIR["aps"][parts[2]] = [parts[3], int(parts[4]) if n > 4 else -60]
    elif w == "noap" and n == 3:
        AIR["aps"].pop(parts[2], None)
    elif w in ("cable", "dhcp") and n == 3:
        AIR[w] = int(parts[2])
    else:
        log("unknown command:", " ".join(parts))


class _Nic:
    def __init__(self):
        self._on = False
        self._t = None  # ticks_ms() of connect(); None: not connecting
        self._was = self._lost = False  # it had got an IP / lost it since

    def active(self, v=None):
        if v is None:
            return self._on
        self._on = bool(v)
        if not v:
            self._t = None

    def _phase(self):
        # 0: associating, 1: waiting for DHCP, 2: got an IP
        d = ticks_diff(ticks_ms(), self._t)
        if d < AIR["assoc_ms"]:
            return 0
        if d < AIR["assoc_ms"] + AIR["dhcp_ms"] or not AIR["dhcp"]:
            return 1
        return 2

    def isconnected(self):
        c = self._on and self._t is not None and self._ok() and self._phase() == 2
        if c:
            self._was = True
        return c

    def ifconfig(self, *a):
        if self.isconnected():
            return ("10.9.0.23", "255.255.255.0", "10.9.0.1", "10.9.0.1")
        return _NOIP


class WLAN(_Nic):
    def __init__(self, itf=STA_IF):
        _Nic.__init__(self)
        self._ssid = self._key = None

    def connect(self, ssid=None, key=None, **kw):
        if not self._on:
            raise OSError("Wifi Not Started")
        self._ssid, self._key = ssid, key
        self._t = ticks_ms()
        self._was = self._lost = False

    def disconnect(self):
        self._t = None
        self._was = self._lost = False

    def _ap(self):
        return AIR["aps"].get(self._ssid)

    def _ok(self):
        ap = self._ap()
        if ap is None or ap[0] != (self._key or ""):
            if self._was:
                self._lost = True  # it was up: the AP went away
            return False
        return not self._lost

    def status(self, param=None):
        if param == "rssi":
            if not self.isconnected():
                raise OSError("not connected")
            return self._ap()[1]
        if param is not None:
            raise ValueError("unknown status param")
        if not self._on or self._t is None:
            return STAT_IDLE
        if self.isconnected():
            return STAT_GOT_IP
        if self._lost:
            return STAT_BEACON_TIMEOUT
        if self._phase() == 0:
            return STAT_CONNECTING
        ap = self._ap()
        if ap is None:
            return STAT_NO_AP_FOUND
        if ap[0] != (self._key or ""):
            return STAT_WRONG_PASSWORD
        return STAT_CONNECTING  # associated, waiting for DHCP

    def scan(self):
        if not self._on:
            raise OSError("Wifi Not Started")
        return [(s.encode(), b"\x02\x00\x00\x00\x00\x01", 6, v[1], 3, False)
                for s, v in AIR["aps"].items()]


class LAN(_Nic):
    def __init__(self, id=0, mdc=None, mdio=None, power=None, phy_type=PHY_LAN8720, phy_addr=0,
                 ref_clk=None, ref_clk_mode=None):
        if mdc is None or mdio is None:
            raise ValueError("mdc and mdio must be specified")
        _Nic.__init__(self)
        self.phy = (phy_type, phy_addr)

    def active(self, v=None):
        r = _Nic.active(self, v)
        if v:
            self._t = ticks_ms()  # autonegotiation + DHCP start with the interface
        return r

    def _ok(self):
        if not AIR["cable"]:
            self._t = ticks_ms()  # plugged in again later: negotiation and DHCP start over
            return False
        return True

    def status(self):
        if not self._on:
            return ETH_STOPPED
        if self.isconnected():
            return ETH_GOT_IP
        return ETH_CONNECTED if AIR["cable"] else ETH_DISCONNECTED
