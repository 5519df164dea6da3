# Helpers shared by the journal case modules (kept small: the cases also run in a 64 KB VM).
import os
from binascii import hexlify

from fwhelpers import key, rmtree, tempdir

# The event JSON the walking-skeleton door formatted itself; the journal must render exactly this.
TAP = ('{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"tap","reader":"%s",'
       '"card":"%s","result":"%s","reason":"%s"}')


def hexs(b):
    return hexlify(b).decode()


def tap(j, boot, seq, t=1700000000, up=1234, reader="in", k=None, result="granted",
        reason="ok", synced=1):
    k = k or key(seq)
    s = j.append_tap(boot, seq, t, synced, up, reader, k, result, reason)
    return s, (TAP % (boot, s, t, synced, up, reader, hexs(k), result, reason)).encode()


def ev(boot, seq):
    return b'{"boot":%d,"seq":%d,"kind":"tap","x":"\\u00e9 ,]"}' % (boot, seq)


def unacked(j):
    return [(b, q, bytes(e)) for b, q, e in j.records()]


def segs(d):
    return sorted(n for n in os.listdir(d + "/journal") if n.endswith(".seg"))


def run(fn):
    d = tempdir()
    try:
        fn(d)
    finally:
        rmtree(d)
