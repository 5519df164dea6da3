"""The admission queue of cloud/api/overload.py on its own (issue #19): slots are handed over in
arrival order, a refused or cancelled waiter never leaks a slot, and a full queue refuses at
once. Plain asyncio against a stand-in app; no timing is asserted."""

from __future__ import annotations

import asyncio
from typing import Any

from cloud.api.overload import Admission


class HeldApp:
    """An ASGI app whose requests finish only when the test releases them."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = scope["path"]
        self.started.append(name)
        await self.release.setdefault(name, asyncio.Event()).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _request(adm: Admission, path: str) -> int:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    await adm({"type": "http", "path": path, "headers": [], "method": "GET"}, receive, send)
    return int(sent[0]["status"])


async def _until(cond: Any) -> None:
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def test_slots_go_in_arrival_order_and_none_leaks() -> None:
    async def main() -> None:
        app = HeldApp()
        adm = Admission(app, limit=1, queue_max=10, wait_s=30, retry_after_s=1)
        first = asyncio.create_task(_request(adm, "/a"))
        await _until(lambda: app.started == ["/a"])
        second = asyncio.create_task(_request(adm, "/b"))
        cancelled = asyncio.create_task(_request(adm, "/c"))
        third = asyncio.create_task(_request(adm, "/d"))
        await _until(lambda: adm.queued == 3)
        cancelled.cancel()  # its client went away while it waited
        await _until(lambda: adm.queued == 2)
        for name in ("/a", "/b", "/d"):
            app.release.setdefault(name, asyncio.Event()).set()
        assert [await first, await second, await third] == [200, 200, 200]
        assert app.started == ["/a", "/b", "/d"]
        assert (adm.inflight, adm.queued) == (0, 0)

    asyncio.run(main())


def test_a_full_queue_and_an_ended_wait_are_503_and_free_nothing() -> None:
    async def main() -> None:
        app = HeldApp()
        adm = Admission(app, limit=1, queue_max=1, wait_s=0.2, retry_after_s=7)
        held = asyncio.create_task(_request(adm, "/a"))
        await _until(lambda: app.started == ["/a"])
        waiting = asyncio.create_task(_request(adm, "/b"))
        await _until(lambda: adm.queued == 1)
        assert await _request(adm, "/c") == 503  # the queue is full: refused at once
        assert await waiting == 503  # its wait ended
        app.release.setdefault("/a", asyncio.Event()).set()
        assert await held == 200
        assert (adm.inflight, adm.queued) == (0, 0)
        app.release.setdefault("/e", asyncio.Event()).set()
        assert await _request(adm, "/e") == 200  # the slot is free again

    asyncio.run(main())
