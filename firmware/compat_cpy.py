# CPython stand-ins for MicroPython's ticks_* and asyncio.sleep_ms/wait_for_ms (compat imports
# this module only under CPython, for the unit tests; a board never loads it). Monotonic ms never
# wraps within a test, so the wrap-around semantics of ticks_* are not needed.
import asyncio
import time


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
