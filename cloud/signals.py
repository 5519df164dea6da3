"""SIGINT/SIGTERM handling shared by the long-running processes (ingest, workers)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT or SIGTERM while the block runs; restore the old handlers after.
    Only from the main thread (Python delivers signals there)."""
    old = {s: signal.signal(s, lambda *_a: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_until_signalled(start: Callable[[], None], stop: Callable[[], None]) -> None:
    """start(), wait for SIGINT/SIGTERM, then stop() (also when start or the wait fails)."""
    done = threading.Event()
    with stop_on_signals(done):
        try:
            start()
            while not done.wait(1.0):
                pass
        finally:
            stop()
