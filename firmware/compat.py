# Small shims so the pure-logic modules import under MicroPython (board, sim) and CPython (pytest).
# MicroPython has ticks_* and asyncio.sleep_ms/wait_for_ms; CPython does not.
import time

try:
    import asyncio
except ImportError:  # pragma: no cover - very old ports
    import uasyncio as asyncio

MICROPYTHON = hasattr(time, "ticks_ms")

if MICROPYTHON:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_ms = asyncio.sleep_ms

    def wait_ms(aw, ms):
        return asyncio.wait_for_ms(aw, ms)

    def const(x):
        return x

    try:
        from micropython import const  # noqa: F811
    except ImportError:
        pass
else:
    # Same wrap-around semantics are not needed on CPython: monotonic ms never wraps in a test.
    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

    def sleep_ms(ms):
        return asyncio.sleep(ms / 1000)

    def wait_ms(aw, ms):
        return asyncio.wait_for(aw, ms / 1000)

    def const(x):
        return x


def mem_free():
    import gc
    try:
        gc.collect()  # report what is really free, not what garbage happens to hold
        return gc.mem_free()
    except AttributeError:  # CPython
        return -1


def hexlify(b):
    import binascii
    return binascii.hexlify(b).decode()


def exists(path):
    import os
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def write_atomic(path, data):
    # Write-then-rename so a reset mid-write leaves either the old or the new file, never a mix.
    # (LittleFS and POSIX both replace the target on rename.)
    import os
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:
        # FAT refuses to rename onto an existing file; fall back to remove+rename.
        os.remove(path)
        os.rename(tmp, path)


def emit(tag, obj):
    # Machine-readable lines for the simulator: "@tag {compact json}". Anything else printed by the
    # firmware must not start with "@".
    import json
    try:
        s = json.dumps(obj, separators=(",", ":"))
    except TypeError:  # older MicroPython without separators
        s = json.dumps(obj)
    print("@" + tag, s)


def log(*args):
    # Human-readable log line; prefixed so it can never be mistaken for an "@" line.
    print("#", *args)
