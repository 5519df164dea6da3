"""The bounded hand-off between the network thread and the writer thread.

Like ``queue.Queue(maxsize)``, but moving lists: the network thread puts every message of one
``recv`` at once, the writer takes a whole flush at once. One lock round per list instead of per
message matters at thousands of messages per second. A full inbox blocks the producer
(backpressure: it stops reading the socket); nothing is ever dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def qsize(self) -> int:
        return len(self._items)

    def put_many(
        self, items: list[T], stop: threading.Event, idle: Callable[[], None] | None = None
    ) -> int:
        """Put ``items`` in order, waiting for room as needed. Returns how many were put: all,
        unless ``stop`` was set while waiting (the rest stay un-acked: the broker redelivers).
        ``idle`` runs about every 0.2 s while waiting (keepalive)."""
        done = 0
        while done < len(items):
            with self._not_full:
                room = self.maxsize - len(self._items)
                if room > 0:
                    self._items.extend(items[done : done + room])
                    done += min(room, len(items) - done)
                    self._not_empty.notify()
                    continue
                if stop.is_set():
                    return done
                self._not_full.wait(0.2)
            if idle is not None and self.qsize() >= self.maxsize:
                idle()
        return done

    def take(
        self,
        max_items: int,
        wait_first: float,
        window: float,
        arrived: Callable[[T], float] | None = None,
    ) -> list[T]:
        """Wait up to ``wait_first`` s for one item, then for up to ``max_items`` until ``window``
        s after the oldest item arrived (``arrived(item)``, a ``time.monotonic()`` stamp; without
        it, from now); return what is there (possibly nothing), oldest first.

        Counting the window from the oldest item's arrival, not from the call, means items that
        queued while the caller was busy writing the previous flush go out at once: under load a
        writer flushes back to back, and a message waits at most ``window`` before its flush
        starts. (Counted from the call, every live flush paid the window on top of the write
        before it.)"""
        with self._not_empty:
            if not self._items:
                self._not_empty.wait(wait_first)
                if not self._items:
                    return []
            start = arrived(self._items[0]) if arrived is not None else time.monotonic()
            deadline = start + window
            while len(self._items) < max_items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._not_empty.wait(remaining)
            n = min(max_items, len(self._items))
            pop = self._items.popleft
            out = [pop() for _ in range(n)]
            self._not_full.notify_all()
            return out
