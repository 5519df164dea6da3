"""The writer's inbox: a flush's window counts from the oldest message's arrival (D22)."""

from __future__ import annotations

import threading
import time

from cloud.ingest.inbox import Inbox


def _put_later(inbox: Inbox[tuple[str, float]], items: list[tuple[str, float]], after: float):
    def run() -> None:
        time.sleep(after)
        inbox.put_many(items, threading.Event())

    t = threading.Thread(target=run)
    t.start()
    return t


def _arrived(item: tuple[str, float]) -> float:
    return item[1]


def test_items_that_waited_out_the_window_go_at_once() -> None:
    inbox: Inbox[tuple[str, float]] = Inbox(100)
    long_ago = time.monotonic() - 60
    inbox.put_many([("a", long_ago), ("b", long_ago), ("c", long_ago)], threading.Event())
    # A window counted from the call would still be open when "d" comes and take it too.
    later = _put_later(inbox, [("d", time.monotonic())], 0.5)
    got = inbox.take(10, 0.2, 30.0, _arrived)
    later.join()
    assert [x for x, _ in got] == ["a", "b", "c"]
    assert [x for x, _ in inbox.take(10, 0.2, 0.0, _arrived)] == ["d"]


def test_fresh_items_wait_for_the_window_or_a_full_flush() -> None:
    inbox: Inbox[tuple[str, float]] = Inbox(100)
    inbox.put_many([("a", time.monotonic())], threading.Event())
    now = time.monotonic()
    later = _put_later(inbox, [(x, now) for x in "bcde"], 0.3)
    got = inbox.take(4, 0.2, 30.0, _arrived)  # full at 4: does not wait out the 30 s
    later.join()
    assert [x for x, _ in got] == ["a", "b", "c", "d"]
    assert [x for x, _ in inbox.take(4, 0.2, 0.0, _arrived)] == ["e"]

