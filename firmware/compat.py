# Small shims so the pure-logic modules import under MicroPython (board, sim) and CPython (pytest).
# MicroPython has ticks_* and asyncio.sleep_ms/wait_for_ms; CPython gets them from compat_cpy.
# Every function defined here costs heap on the board (its code object and function object), so
# the MicroPython names are bound straight to the built-ins, and the CPython stand-ins live in a
# module the board never imports.
import time

try:
    import asyncio
except ImportError:  # pragma: no cover - very old ports
    import uasyncio as asyncio

MICROPYTHON = hasattr(time, "ticks_ms")

if MICROPYTHON:
    from time import ticks_add, ticks_diff, ticks_ms  # noqa: F401

    sleep_ms = asyncio.sleep_ms

    async def wait_ms(aw, ms):
        # asyncio.wait_for_ms without asyncio.funcs (~0.8 KB of heap for its module, plus a
        # helper task per wait): aw runs as a task, polled until done or `ms` is up, after 1,
        # 2, 4, 8 and 16 ms, then every 20 ms: a PUBACK that comes in 1 ms is seen then, not
        # after 20 ms (a batch's publish waits for it: D25-L).
        t = asyncio.create_task(aw)
        end = ticks_add(ticks_ms(), ms)
        d = 1
        try:
            while not t.done():
                if ticks_diff(end, ticks_ms()) <= 0:
                    raise asyncio.TimeoutError
                await sleep_ms(d)
                d = d + d if d < 10 else 20
        except BaseException:  # timed out, or the caller was cancelled: the task goes too
            t.cancel()
            raise
        return await t
else:
    from compat_cpy import sleep_ms, ticks_add, ticks_diff, ticks_ms, wait_ms  # noqa: F401


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


def write_atomic(path, data):
    # Write-then-rename so a reset mid-write leaves either the old or the new file, never a mix.
    # (LittleFS and POSIX both replace the target on rename.) `data`: bytes, or a function that
    # writes the text into the open file (json.dump: no copy of a big document in the heap).
    import os
    tmp = path + ".tmp"
    w = callable(data)
    with open(tmp, "w" if w else "wb") as f:
        if w:
            data(f)
        else:
            f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:
        # FAT refuses to rename onto an existing file; fall back to remove+rename.
        os.remove(path)
        os.rename(tmp, path)


def unload(*names):
    # Drop lazily imported modules again (sys.modules and the attribute on their package), so
    # their code and module dict go back to the heap once nothing refers to them.
    # A name, or the module itself (its __name__ is a qstr; a dotted name of more than 10
    # characters in the caller's code would be a string object in the heap).
    import sys
    for n in names:
        if not isinstance(n, str):
            n = n.__name__
        sys.modules.pop(n, None)
        pkg, _, leaf = n.rpartition(".")
        p = sys.modules.get(pkg)
        if p is not None and hasattr(p, leaf):
            delattr(p, leaf)


def emit(tag, obj):
    # Machine-readable lines for the simulator: "@tag {compact json}". Anything else printed by the
    # firmware must not start with "@".
    import json
    c = ","  # the separators built per call: a tuple of constants stays in the heap (D16)
    try:
        s = json.dumps(obj, separators=(c, ":"))
    except TypeError:  # older MicroPython without separators
        s = json.dumps(obj)
    print("@" + tag, s)


def log(*args):
    # Human-readable log line; prefixed so it can never be mistaken for an "@" line.
    print("#", *args)
